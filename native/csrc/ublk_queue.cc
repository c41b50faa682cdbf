// A ublk queue served by the JS main thread, not by a native thread per queue.
//
// Why the JS thread drives the ring, not a native thread per queue:
// - ublk binds each queue to the task that FETCHed it (ubq_daemon) and rejects commands from
//   any other task with EINVAL; the kernel delivers every request as io_uring task work to that
//   task. With one thread that both FETCHes and COMMITs there is no hand-off at all: requests
//   are reaped in the uv_poll callback and commits are submitted directly from the JS call that
//   completes them (one io_uring_enter per batch). A native ring thread would need a
//   ThreadSafeFunction for requests and a second queue + wakeup back to the ring thread for
//   every commit batch: two cross-thread hops per request instead of none.
// - It works with the kernel as is: task work queued with TWA_SIGNAL wakes the JS thread even
//   when it sleeps in epoll_wait, the CQE is posted on its way back to user space, the ring's
//   registered eventfd fires, and libuv runs our poll callback. (We do not use
//   IORING_SETUP_COOP_TASKRUN/DEFER_TASKRUN, which would leave task work pending while the
//   thread sleeps in epoll.) I/O submissions go inline (ublk's uring_cmd never punts to io-wq
//   workers), so `current` is always the JS thread.
// - Costs: a long synchronous JS task delays I/O; blocking control commands (START_DEV,
//   END_USER_RECOVERY, DEL_DEV) must never run on this thread — they run on the pool
//   (ublk_control.cc) while this thread keeps serving the queue they wait for.
//
// Memory shared with JS without copies: the tag buffers (one anonymous mapping, tag t at
// t * maxIoBytes, exposed as one external ArrayBuffer), a Float64Array of delivered requests,
// an Int32Array of faults and an Int32Array that JS fills with (tag, result) pairs to commit.
// Nothing is allocated per request.
#include "ublk_queue.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "ublk_abi.h"

namespace wsblk {
namespace {

using namespace ublk;

constexpr unsigned kRequestWords = 4;  // tag, op_flags, nr_sectors, start_sector
constexpr uint64_t kKindFetch = 1;
constexpr uint64_t kKindCommit = 2;

uint64_t UserData(uint64_t kind, unsigned tag) { return kind << 16 | tag; }

std::string CharDevPath(uint32_t dev_id) { return kCharDevPrefix + std::to_string(dev_id); }

std::string OpenMessage(uint32_t dev_id, int err) {
  const std::string path = CharDevPath(dev_id);
  switch (err) {
    case ENOENT:
      return path + " does not exist (no such device, or its node is not created yet)";
    case EBUSY:
      return path + " is busy: another daemon has it open (it is exclusive)";
    case EACCES:
    case EPERM:
      return "permission denied opening " + path + " (run as root)";
    default:
      return "cannot open " + path + ": " + std::strerror(err);
  }
}

// openCharDevice(devId) -> fd of /dev/ublkcN (O_RDWR | O_CLOEXEC). The open is exclusive per
// device: every queue of the device dups this one fd; the caller closes it once they have.
Napi::Value OpenCharDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "openCharDevice(devId)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t dev_id = info[0].As<Napi::Number>().Uint32Value();
  int fd;
  do {
    fd = open(CharDevPath(dev_id).c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    ThrowErrno(env, err, OpenMessage(dev_id, err), "open");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void UblkQueue::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(
      env, "UblkQueue",
      {InstanceMethod<&UblkQueue::FetchAll>("fetchAll"),
       InstanceMethod<&UblkQueue::Commit>("commit"), InstanceMethod<&UblkQueue::Close>("close")});
  exports.Set("UblkQueue", cls);
  exports.Set("openCharDevice", Napi::Function::New(env, OpenCharDevice, "openCharDevice"));
}

UblkQueue::UblkQueue(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<UblkQueue>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsNumber() || !info[5].IsFunction()) {
    Napi::TypeError::New(env, "new UblkQueue(charDevFd, devId, queueId, depth, maxIoBytes, onBatch)")
        .ThrowAsJavaScriptException();
    return;
  }
  const int char_dev_fd = info[0].As<Napi::Number>().Int32Value();
  dev_id_ = info[1].As<Napi::Number>().Uint32Value();
  q_id_ = info[2].As<Napi::Number>().Uint32Value();
  depth_ = info[3].As<Napi::Number>().Uint32Value();
  max_io_ = info[4].As<Napi::Number>().Uint32Value();
  const long page = sysconf(_SC_PAGESIZE);
  if (depth_ < 1 || depth_ > kMaxQueueDepth || q_id_ >= kMaxNrQueues || max_io_ < 512 ||
      max_io_ % 512 != 0 || max_io_ > (1u << 30)) {
    Napi::RangeError::New(env, "bad queue geometry (depth 1..4096, maxIoBytes a multiple of 512)")
        .ThrowAsJavaScriptException();
    return;
  }

  // Tag buffers first, owned by an external ArrayBuffer so JS can never see them unmapped.
  const size_t buf_len = size_t{depth_} * max_io_;
  void* bufs = mmap(nullptr, buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bufs == MAP_FAILED) {
    ThrowErrno(env, errno, "cannot allocate the queue's I/O buffers", "mmap");
    return;
  }
  // The kernel copies into these pages from our task; a fork must not make them copy-on-write.
  madvise(bufs, buf_len, MADV_DONTFORK);
  bufs_ = static_cast<uint8_t*>(bufs);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
      env, bufs, buf_len,
      [](Napi::Env, void* data, size_t* len) {
        munmap(data, *len);
        delete len;
      },
      new size_t(buf_len));

  // Our own reference to the device's one open file, released by close().
  cdev_fd_ = fcntl(char_dev_fd, F_DUPFD_CLOEXEC, 0);
  if (cdev_fd_ < 0) {
    int err = errno;
    ThrowErrno(env, err, "cannot dup the fd of " + CharDevPath(dev_id_) + ": " + std::strerror(err),
               "fcntl");
    return;
  }

  iods_len_ = IodAreaLength(depth_, page);
  void* iods = mmap(nullptr, iods_len_, PROT_READ, MAP_SHARED | MAP_POPULATE, cdev_fd_,
                    static_cast<off_t>(IodAreaOffset(q_id_, page)));
  if (iods == MAP_FAILED) {
    int err = errno;
    iods_len_ = 0;
    Release(false);
    ThrowErrno(env, err,
               "cannot map the descriptors of queue " + std::to_string(q_id_) + " of " +
                   CharDevPath(dev_id_) + ": " + std::strerror(err) +
                   (err == EINVAL ? " (queue id or depth do not match the device, or another "
                                    "process mapped it)"
                                  : ""),
               "mmap");
    return;
  }
  madvise(iods, iods_len_, MADV_DONTFORK);
  iods_ = static_cast<const uint8_t*>(iods);

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int r = ev_.Init(loop, depth_, 0, &UblkQueue::OnReady, this);
  if (r == 0) r = ev_.ring().RegisterFiles(&cdev_fd_, 1);
  if (r < 0) {
    Release(false);
    ThrowErrno(env, -r, std::string("cannot set up the queue's io_uring: ") + std::strerror(-r),
               "io_uring_setup");
    return;
  }

  Napi::ArrayBuffer shared = Napi::ArrayBuffer::New(
      env, size_t{depth_} * (kRequestWords * sizeof(double) + 4 * sizeof(int32_t)));
  auto* base = static_cast<uint8_t*>(shared.Data());
  requests_ = reinterpret_cast<double*>(base);
  faults_ = reinterpret_cast<int32_t*>(base + size_t{depth_} * kRequestWords * sizeof(double));
  commits_ = faults_ + size_t{depth_} * 2;
  Napi::Object self = info.This().As<Napi::Object>();
  self.Set("buffer", buffer);
  self.Set("requests", Napi::Float64Array::New(env, size_t{depth_} * kRequestWords, shared, 0));
  self.Set("faults", Napi::Int32Array::New(env, size_t{depth_} * 2, shared,
                                           size_t{depth_} * kRequestWords * sizeof(double)));
  self.Set("commits",
           Napi::Int32Array::New(env, size_t{depth_} * 2, shared,
                                 size_t{depth_} * (kRequestWords * sizeof(double) + 8)));
  arrays_ = Napi::Persistent(Napi::Value(shared));

  tag_state_.assign(depth_, kIdle);
  on_batch_ = Napi::Persistent(info[5].As<Napi::Function>());
  async_ctx_ = std::make_unique<Napi::AsyncContext>(env, "wsblk:UblkQueue");
  open_ = true;
  // An open queue must not be collected: the kernel and the poll handle refer to it.
  Napi::ObjectWrap<UblkQueue>::Ref();
  napi_add_env_cleanup_hook(env, &UblkQueue::OnEnvCleanup, this);
  cleanup_hook_ = true;
}

UblkQueue::~UblkQueue() { Release(true); }

void UblkQueue::OnEnvCleanup(void* self) {
  auto* q = static_cast<UblkQueue*>(self);
  q->cleanup_hook_ = false;  // the hook is being consumed
  q->Release(true);
}

void UblkQueue::Release(bool from_teardown) {
  ev_.Close();  // the kernel cancels our outstanding commands as the ring goes away
  if (iods_) munmap(const_cast<uint8_t*>(iods_), iods_len_);
  iods_ = nullptr;
  if (cdev_fd_ >= 0) close(cdev_fd_);
  cdev_fd_ = -1;
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, &UblkQueue::OnEnvCleanup, this);
    cleanup_hook_ = false;
  }
  if (open_) {
    open_ = false;
    if (!from_teardown) Napi::ObjectWrap<UblkQueue>::Unref();
  }
}

void UblkQueue::OnReady(void* self) { static_cast<UblkQueue*>(self)->Reap(); }

void UblkQueue::Reap() {
  if (!open_) return;
  unsigned nreq = 0, nfault = 0;
  ev_.ring().ForEachCqe([&](const io_uring_cqe& cqe) {
    const unsigned tag = cqe.user_data & 0xffff;
    const uint64_t kind = cqe.user_data >> 16;
    if (tag >= depth_) return;
    if (cqe.res == kIoResOk) {
      IoDesc d;
      std::memcpy(&d, iods_ + size_t{tag} * sizeof(IoDesc), sizeof d);
      double* out = requests_ + size_t{nreq++} * kRequestWords;
      out[0] = tag;
      out[1] = d.op_flags;
      out[2] = d.nr_sectors;
      out[3] = static_cast<double>(d.start_sector);
      tag_state_[tag] = kHeldByJs;
      return;
    }
    // -ENODEV: the queue is aborted (device stopping, or our ring going away); never refetch.
    // Anything else means the kernel refused the command: a failed COMMIT leaves the request
    // with us, a failed FETCH leaves the tag idle.
    if (cqe.res == kIoResAbort) tag_state_[tag] = kAborted;
    else tag_state_[tag] = kind == kKindCommit ? kHeldByJs : kIdle;
    faults_[nfault * 2] = tag;
    faults_[nfault * 2 + 1] = cqe.res;
    ++nfault;
  });
  if (nreq == 0 && nfault == 0) return;
  Napi::HandleScope scope(env_);
  on_batch_.MakeCallback(Value(), {Napi::Number::New(env_, nreq), Napi::Number::New(env_, nfault)},
                         *async_ctx_);
  if (env_.IsExceptionPending()) {
    // Nothing JS is on the stack here: report it as uncaught, as Node does for its callbacks.
    napi_value err;
    napi_get_and_clear_last_exception(env_, &err);
    napi_fatal_exception(env_, err);
  }
}

int UblkQueue::SubmitOrThrow(Napi::Env env, const char* what) {
  int r = ev_.ring().Submit();
  if (r < 0)
    ThrowErrno(env, -r, std::string("io_uring_enter (") + what + ") failed on queue " +
                            std::to_string(q_id_) + ": " + std::strerror(-r),
               "io_uring_enter");
  return r;
}

// fetchAll() -> number of FETCH_REQ submitted (every idle tag), with one io_uring_enter.
Napi::Value UblkQueue::FetchAll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!open_) {
    ThrowErrno(env, EBADF, "queue is closed", "fetchAll");
    return env.Undefined();
  }
  unsigned n = 0;
  for (unsigned tag = 0; tag < depth_; ++tag) {
    if (tag_state_[tag] != kIdle) continue;
    io_uring_sqe* sqe = ev_.ring().GetSqe();
    if (!sqe) {
      if (SubmitOrThrow(env, "FETCH_REQ") < 0) return env.Undefined();
      sqe = ev_.ring().GetSqe();
      if (!sqe) break;
    }
    sqe->opcode = kOpUringCmd;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->fd = 0;
    sqe->cmd_op = kIoFetchReq;
    sqe->user_data = UserData(kKindFetch, tag);
    auto* c = reinterpret_cast<IoCmd*>(Ring::SqeCmd(sqe));
    c->q_id = static_cast<uint16_t>(q_id_);
    c->tag = static_cast<uint16_t>(tag);
    c->addr = reinterpret_cast<uint64_t>(bufs_ + size_t{tag} * max_io_);
    tag_state_[tag] = kInKernel;
    ++n;
  }
  if (SubmitOrThrow(env, "FETCH_REQ") < 0) return env.Undefined();
  return Napi::Number::New(env, n);
}

// commit(n) -> number of COMMIT_AND_FETCH_REQ submitted for the first n (tag, result) pairs of
// `commits`, with one io_uring_enter. Tags the kernel already aborted are skipped; a tag not
// held by JS is a caller bug and throws (after submitting the valid ones).
Napi::Value UblkQueue::Commit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!open_) {
    ThrowErrno(env, EBADF, "queue is closed", "commit");
    return env.Undefined();
  }
  uint32_t n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value()
                                                       : 0;
  n = std::min(n, depth_);
  unsigned submitted = 0;
  bool bad = false;
  int32_t bad_tag = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const int32_t tag = commits_[i * 2];
    int32_t result = commits_[i * 2 + 1];
    if (tag < 0 || static_cast<uint32_t>(tag) >= depth_ || tag_state_[tag] != kHeldByJs) {
      if (tag >= 0 && static_cast<uint32_t>(tag) < depth_ && tag_state_[tag] == kAborted) continue;
      bad = true;
      bad_tag = tag;
      continue;
    }
    // The kernel warns if a READ claims more bytes than the request has.
    IoDesc d;
    std::memcpy(&d, iods_ + size_t{static_cast<uint32_t>(tag)} * sizeof(IoDesc), sizeof d);
    const int64_t bytes = int64_t{d.nr_sectors} << 9;
    if (result > bytes) result = static_cast<int32_t>(bytes);
    io_uring_sqe* sqe = ev_.ring().GetSqe();
    if (!sqe) {
      if (SubmitOrThrow(env, "COMMIT_AND_FETCH_REQ") < 0) return env.Undefined();
      sqe = ev_.ring().GetSqe();
      if (!sqe) break;
    }
    sqe->opcode = kOpUringCmd;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->fd = 0;
    sqe->cmd_op = kIoCommitAndFetchReq;
    sqe->user_data = UserData(kKindCommit, static_cast<unsigned>(tag));
    auto* c = reinterpret_cast<IoCmd*>(Ring::SqeCmd(sqe));
    c->q_id = static_cast<uint16_t>(q_id_);
    c->tag = static_cast<uint16_t>(tag);
    c->result = result;
    c->addr = reinterpret_cast<uint64_t>(bufs_ + size_t{static_cast<uint32_t>(tag)} * max_io_);
    tag_state_[tag] = kInKernel;
    ++submitted;
  }
  if (SubmitOrThrow(env, "COMMIT_AND_FETCH_REQ") < 0) return env.Undefined();
  if (bad) {
    ThrowErrno(env, EINVAL, "commit of tag " + std::to_string(bad_tag) +
                                " which the queue did not hand to JS", "commit");
    return env.Undefined();
  }
  return Napi::Number::New(env, submitted);
}

Napi::Value UblkQueue::Close(const Napi::CallbackInfo& info) {
  Release(false);
  return info.Env().Undefined();
}

}  // namespace wsblk
