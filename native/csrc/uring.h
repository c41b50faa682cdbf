// A minimal io_uring, reached through raw syscalls (no liburing): setup, mmap of the rings,
// SQE preparation, submit/wait, CQE reaping, file and eventfd registration.
// A Ring is used by one thread at a time; it does no locking.
#pragma once

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>
#include <ctime>

namespace wsblk {

// Newer than bookworm's <linux/io_uring.h> (6.1) or spelled out for clarity.
constexpr uint8_t kOpUringCmd = 46;  // IORING_OP_URING_CMD (5.19)

class Ring {
 public:
  Ring() = default;
  ~Ring() { Close(); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // io_uring_setup + mmap. Returns 0 or -errno. The ring fd is made FD_CLOEXEC.
  int Init(unsigned entries, unsigned setup_flags);
  void Close();
  bool IsOpen() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  unsigned sq_entries() const { return sq_entries_; }
  unsigned features() const { return features_; }

  // Next free SQE, zeroed (128 bytes with SQE128), or nullptr when the SQ ring is full.
  io_uring_sqe* GetSqe();
  // The command area of an SQE (16 bytes on 64-byte SQEs, 80 with SQE128).
  static uint8_t* SqeCmd(io_uring_sqe* sqe) { return reinterpret_cast<uint8_t*>(sqe) + 48; }

  // Publishes prepared SQEs and enters the kernel once. Returns the number submitted or -errno.
  // EINTR is retried. With min_complete > 0 it also waits for that many CQEs.
  int Submit(unsigned min_complete = 0);
  // Waits until at least one CQE is ready or timeout_ms passes (-ETIME). Returns 0 or -errno.
  int WaitCqe(int64_t timeout_ms);

  // Calls f(const io_uring_cqe&) for every ready CQE and consumes them. Returns how many.
  template <typename F>
  unsigned ForEachCqe(F&& f) {
    unsigned head = *cq_head_;
    unsigned tail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    while (head != tail) {
      f(cqes_[head & cq_mask_]);
      ++head;
      ++n;
    }
    if (n) __atomic_store_n(cq_head_, head, __ATOMIC_RELEASE);
    return n;
  }
  bool HasCqe() const {
    return *cq_head_ != __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
  }

  int RegisterFiles(const int* fds, unsigned n);
  int RegisterEventfd(int efd);

 private:
  int Enter(unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
            size_t argsz);

  int fd_ = -1;
  unsigned setup_flags_ = 0;
  unsigned features_ = 0;
  unsigned sq_entries_ = 0;
  size_t sqe_size_ = 64;

  void* sq_map_ = nullptr;
  size_t sq_map_len_ = 0;
  void* cq_map_ = nullptr;  // == sq_map_ with IORING_FEAT_SINGLE_MMAP
  size_t cq_map_len_ = 0;
  void* sqes_map_ = nullptr;
  size_t sqes_map_len_ = 0;

  unsigned* sq_head_ = nullptr;
  unsigned* sq_tail_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned* sq_array_ = nullptr;
  unsigned* cq_head_ = nullptr;
  unsigned* cq_tail_ = nullptr;
  unsigned cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;

  unsigned sqe_tail_ = 0;  // local: SQEs handed out by GetSqe, not yet published
};

}  // namespace wsblk
