// Closing a uv_poll_t that was allocated with new: libuv may still refer to the handle until
// uv_close's callback, which frees it.
#pragma once
#include <uv.h>

namespace wsblk {

// Stops polling and closes the handle; sets `poll` to nullptr. No-op when it is already null.
inline void ClosePoll(uv_poll_t*& poll) {
  if (!poll) return;
  uv_poll_stop(poll);
  poll->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(poll),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll = nullptr;
}

}  // namespace wsblk
