#include "event_ring.h"

#include "uv_poll_util.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace wsblk {

int EventRing::Init(uv_loop_t* loop, unsigned entries, unsigned setup_flags, ReadyFn on_ready,
                    void* owner) {
  Close();
  on_ready_ = on_ready;
  owner_ = owner;
  int r = ring_.Init(entries, setup_flags);
  if (r < 0) return r;
  efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd_ < 0) {
    r = -errno;
    Close();
    return r;
  }
  r = ring_.RegisterEventfd(efd_);
  if (r < 0) {
    Close();
    return r;
  }
  poll_ = new uv_poll_t;
  r = uv_poll_init(loop, poll_, efd_);
  if (r < 0) {
    delete poll_;
    poll_ = nullptr;
    Close();
    return r;  // libuv errors are -errno on Linux
  }
  poll_->data = this;
  r = uv_poll_start(poll_, UV_READABLE, OnPoll);
  if (r < 0) {
    Close();
    return r;
  }
  return 0;
}

void EventRing::OnPoll(uv_poll_t* handle, int /*status*/, int /*events*/) {
  auto* self = static_cast<EventRing*>(handle->data);
  if (!self) return;
  // Drain before reaping: a CQE posted after this read signals the eventfd again.
  uint64_t v;
  while (read(self->efd_, &v, sizeof v) == sizeof v) {
  }
  self->on_ready_(self->owner_);
}

void EventRing::Close() {
  ClosePoll(poll_);
  if (efd_ >= 0) close(efd_);  // safe once polling stopped
  efd_ = -1;
  ring_.Close();
}

}  // namespace wsblk
