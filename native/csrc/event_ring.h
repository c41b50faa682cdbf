// A Ring whose completions wake the JS thread's libuv loop: an eventfd registered with the ring
// (IORING_REGISTER_EVENTFD) and watched by a uv_poll_t. Every call happens on the loop's thread.
#pragma once
#include <uv.h>

#include "uring.h"

namespace wsblk {

class EventRing {
 public:
  using ReadyFn = void (*)(void* owner);

  EventRing() = default;
  ~EventRing() { Close(); }
  EventRing(const EventRing&) = delete;
  EventRing& operator=(const EventRing&) = delete;

  // Creates the ring and eventfd and starts polling; on_ready(owner) runs on the loop thread
  // whenever CQEs may be ready (the eventfd is drained first). Returns 0 or -errno.
  int Init(uv_loop_t* loop, unsigned entries, unsigned setup_flags, ReadyFn on_ready, void* owner);
  // Stops polling, closes the eventfd and the ring. Idempotent.
  void Close();
  Ring& ring() { return ring_; }
  bool IsOpen() const { return ring_.IsOpen(); }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);

  Ring ring_;
  int efd_ = -1;
  uv_poll_t* poll_ = nullptr;  // freed by uv_close's callback
  ReadyFn on_ready_ = nullptr;
  void* owner_ = nullptr;
};

}  // namespace wsblk
