#include "uring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace wsblk {
namespace {

void* MapRing(int fd, size_t len, off_t offset) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
  if (p == MAP_FAILED) return nullptr;
  // A forked child (before exec) must not keep the ring's file alive.
  madvise(p, len, MADV_DONTFORK);
  return p;
}

}  // namespace

int Ring::Init(unsigned entries, unsigned setup_flags) {
  Close();
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = setup_flags;
  int fd = static_cast<int>(syscall(__NR_io_uring_setup, entries, &p));
  if (fd < 0) return -errno;
  fd_ = fd;
  // io_uring fds are O_CLOEXEC since 5.x; make sure on every kernel.
  int fdflags = fcntl(fd, F_GETFD);
  if (fdflags >= 0 && !(fdflags & FD_CLOEXEC)) fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC);

  setup_flags_ = setup_flags;
  features_ = p.features;
  sq_entries_ = p.sq_entries;
  sqe_size_ = (setup_flags & IORING_SETUP_SQE128) ? 128 : 64;

  sq_map_len_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cq_map_len_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    sq_map_len_ = cq_map_len_ = std::max(sq_map_len_, cq_map_len_);
  }
  sq_map_ = MapRing(fd, sq_map_len_, IORING_OFF_SQ_RING);
  if (!sq_map_) {
    int e = errno;
    Close();
    return -e;
  }
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    cq_map_ = sq_map_;
  } else {
    cq_map_ = MapRing(fd, cq_map_len_, IORING_OFF_CQ_RING);
    if (!cq_map_) {
      int e = errno;
      Close();
      return -e;
    }
  }
  sqes_map_len_ = p.sq_entries * sqe_size_;
  sqes_map_ = MapRing(fd, sqes_map_len_, IORING_OFF_SQES);
  if (!sqes_map_) {
    int e = errno;
    Close();
    return -e;
  }

  auto* sq = static_cast<uint8_t*>(sq_map_);
  sq_head_ = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
  sq_tail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
  sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
  sq_array_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
  auto* cq = static_cast<uint8_t*>(cq_map_);
  cq_head_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
  cq_tail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
  cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
  cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  // SQEs are always used in ring order, so the indirection array is the identity.
  for (unsigned i = 0; i < p.sq_entries; ++i) sq_array_[i] = i;
  sqe_tail_ = *sq_tail_;
  return 0;
}

void Ring::Close() {
  if (sqes_map_) munmap(sqes_map_, sqes_map_len_);
  if (cq_map_ && cq_map_ != sq_map_) munmap(cq_map_, cq_map_len_);
  if (sq_map_) munmap(sq_map_, sq_map_len_);
  sqes_map_ = cq_map_ = sq_map_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

io_uring_sqe* Ring::GetSqe() {
  unsigned head = __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
  if (sqe_tail_ - head >= sq_entries_) return nullptr;
  auto* sqe = reinterpret_cast<io_uring_sqe*>(static_cast<uint8_t*>(sqes_map_) +
                                              size_t{sqe_tail_ & sq_mask_} * sqe_size_);
  std::memset(sqe, 0, sqe_size_);
  ++sqe_tail_;
  return sqe;
}

int Ring::Enter(unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
                size_t argsz) {
  long r = syscall(__NR_io_uring_enter, fd_, to_submit, min_complete, flags, arg, argsz);
  return r < 0 ? -errno : static_cast<int>(r);
}

int Ring::Submit(unsigned min_complete) {
  __atomic_store_n(sq_tail_, sqe_tail_, __ATOMIC_RELEASE);
  unsigned flags = min_complete ? IORING_ENTER_GETEVENTS : 0;
  for (;;) {
    unsigned pending = sqe_tail_ - __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
    if (pending == 0 && min_complete == 0) return 0;
    int r = Enter(pending, min_complete, flags, nullptr, 0);
    if (r == -EINTR) continue;
    return r;
  }
}

int Ring::WaitCqe(int64_t timeout_ms) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (HasCqe()) return 0;
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
    if (left.count() <= 0) return -ETIME;
    __kernel_timespec ts;
    ts.tv_sec = left.count() / 1000000000;
    ts.tv_nsec = left.count() % 1000000000;
    io_uring_getevents_arg arg;
    std::memset(&arg, 0, sizeof arg);
    arg.ts = reinterpret_cast<uint64_t>(&ts);
    int r = Enter(0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN) return r;
  }
}

int Ring::RegisterFiles(const int* fds, unsigned n) {
  long r = syscall(__NR_io_uring_register, fd_, IORING_REGISTER_FILES, fds, n);
  return r < 0 ? -errno : 0;
}

int Ring::RegisterEventfd(int efd) {
  long r = syscall(__NR_io_uring_register, fd_, IORING_REGISTER_EVENTFD, &efd, 1);
  return r < 0 ? -errno : 0;
}

}  // namespace wsblk
