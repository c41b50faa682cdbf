#include "ublk_control.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "errors.h"
#include "ublk_abi.h"
#include "uring.h"

namespace wsblk {
namespace {

using namespace ublk;

// Where a control command failed; decides the message.
enum class Stage { kNone, kOpen, kRing, kSubmit, kTimeout, kCommand };

constexpr uint64_t kCancelTag = 2;
constexpr uint64_t kCommandTag = 1;
constexpr int64_t kCancelGraceMs = 2000;

bool KernelOlderThan(int major, int minor) {
  int ma = 0, mi = 0;
  if (std::sscanf(KernelRelease().c_str(), "%d.%d", &ma, &mi) != 2) return false;
  return ma < major || (ma == major && mi < minor);
}

std::string DevLabel(uint32_t dev_id) {
  return dev_id == 0xFFFFFFFFu ? std::string("(auto id)") : std::to_string(dev_id);
}

std::string FailureMessage(uint32_t cmd, uint32_t dev_id, Stage stage, int err,
                           int64_t timeout_ms) {
  const std::string name = ControlCommandName(cmd);
  const std::string dev = DevLabel(dev_id);
  switch (stage) {
    case Stage::kOpen:
      return ControlOpenMessage(err);
    case Stage::kRing:
      if (err == EINVAL)
        return "kernel too old (Linux " + KernelRelease() +
               "): io_uring lacks SQE128 / URING_CMD (ublk needs Linux >= 6.5)";
      if (err == ENOSYS || err == EPERM)
        return std::string("io_uring is unavailable (") + std::strerror(err) +
               "): disabled by kernel.io_uring_disabled or a seccomp filter";
      return std::string("io_uring_setup failed: ") + std::strerror(err);
    case Stage::kSubmit:
      return "io_uring_enter failed for ublk " + name + ": " + std::strerror(err);
    case Stage::kTimeout:
      return "ublk " + name + " on device " + dev + " timed out after " +
             std::to_string(timeout_ms) + " ms";
    case Stage::kNone:
    case Stage::kCommand:
      break;
  }
  if (err == kENOTSUPP || err == EOPNOTSUPP ||
      (cmd == kCmdGetFeatures && (err == ENODEV || err == EINVAL))) {
    return "kernel too old (Linux " + KernelRelease() + "): ublk_drv does not understand " +
           (cmd == kCmdGetFeatures ? std::string("GET_FEATURES")
                                   : "the ioctl-encoded " + name + " command") +
           " (needs Linux >= 6.5)";
  }
  if (cmd == kCmdAddDev && err == EEXIST) return "device id " + dev + " is taken";
  if (cmd == kCmdAddDev && err == EINVAL)
    return "ADD_DEV rejected the device geometry (queues 1..4096, depth 1..4096)";
  if (err == ENODEV) return "no ublk device with id " + dev;
  if (cmd == kCmdSetParams && err == EACCES)
    return "SET_PARAMS on device " + dev +
           " refused: parameters can only be set before START_DEV (and not during recovery)";
  if (cmd == kCmdSetParams && err == EINVAL)
    return "SET_PARAMS on device " + dev + " rejected the parameters (block sizes, max_sectors, "
           "or discard granularity/segments)";
  if (err == EPERM || err == EACCES)
    return "permission denied for ublk " + name + " on device " + dev + " (run as root)";
  if (cmd == kCmdStartUserRecovery && err == EBUSY)
    return "device " + dev + " is not ready for user recovery (the old daemon still holds /dev/ublkc" +
           dev + " or the device is not QUIESCED yet)";
  if (cmd == kCmdStartUserRecovery && err == EINVAL)
    return "device " + dev + " cannot be recovered (created without UBLK_F_USER_RECOVERY, or never started)";
  if (cmd == kCmdEndUserRecovery && err == EBUSY)
    return "END_USER_RECOVERY on device " + dev + ": the device is not QUIESCED";
  if (cmd == kCmdStartDev && err == EEXIST) return "device " + dev + " is already started";
  if (cmd == kCmdStartDev && err == EINVAL)
    return "START_DEV on device " + dev + " refused (parameters not set, or bad pid)";
  if (err == EINTR) return "ublk " + name + " on device " + dev + " was interrupted";
  return "ublk " + name + " on device " + dev + " failed: " + std::strerror(err);
}

double NumField(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}

Napi::Object DevInfoToJs(Napi::Env env, const CtrlDevInfo& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("nrHwQueues", Napi::Number::New(env, d.nr_hw_queues));
  o.Set("queueDepth", Napi::Number::New(env, d.queue_depth));
  o.Set("state", Napi::Number::New(env, d.state));
  o.Set("maxIoBufBytes", Napi::Number::New(env, d.max_io_buf_bytes));
  o.Set("devId", Napi::Number::New(env, d.dev_id));
  o.Set("ublksrvPid", Napi::Number::New(env, d.ublksrv_pid));
  o.Set("flags", Napi::Number::New(env, static_cast<double>(d.flags)));
  o.Set("ublksrvFlags", Napi::Number::New(env, static_cast<double>(d.ublksrv_flags)));
  o.Set("ownerUid", Napi::Number::New(env, d.owner_uid));
  o.Set("ownerGid", Napi::Number::New(env, d.owner_gid));
  return o;
}

Napi::Object ParamsToJs(Napi::Env env, const Params& p) {
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  set("types", p.types);
  set("attrs", p.basic.attrs);
  set("logicalBsShift", p.basic.logical_bs_shift);
  set("physicalBsShift", p.basic.physical_bs_shift);
  set("ioOptShift", p.basic.io_opt_shift);
  set("ioMinShift", p.basic.io_min_shift);
  set("maxSectors", p.basic.max_sectors);
  set("chunkSectors", p.basic.chunk_sectors);
  set("devSectors", static_cast<double>(p.basic.dev_sectors));
  set("virtBoundaryMask", static_cast<double>(p.basic.virt_boundary_mask));
  set("discardAlignment", p.discard.discard_alignment);
  set("discardGranularity", p.discard.discard_granularity);
  set("maxDiscardSectors", p.discard.max_discard_sectors);
  set("maxWriteZeroesSectors", p.discard.max_write_zeroes_sectors);
  set("maxDiscardSegments", p.discard.max_discard_segments);
  set("charMajor", p.devt.char_major);
  set("charMinor", p.devt.char_minor);
  set("diskMajor", p.devt.disk_major);
  set("diskMinor", p.devt.disk_minor);
  return o;
}

void ParamsFromJs(const Napi::Object& o, Params* p) {
  std::memset(p, 0, sizeof *p);
  p->len = sizeof(Params);
  p->types = static_cast<uint32_t>(NumField(o, "types", kParamTypeBasic));
  p->basic.attrs = static_cast<uint32_t>(NumField(o, "attrs", 0));
  p->basic.logical_bs_shift = static_cast<uint8_t>(NumField(o, "logicalBsShift", 9));
  p->basic.physical_bs_shift = static_cast<uint8_t>(NumField(o, "physicalBsShift", 12));
  p->basic.io_opt_shift = static_cast<uint8_t>(NumField(o, "ioOptShift", 12));
  p->basic.io_min_shift = static_cast<uint8_t>(NumField(o, "ioMinShift", 9));
  p->basic.max_sectors = static_cast<uint32_t>(NumField(o, "maxSectors", 0));
  p->basic.chunk_sectors = static_cast<uint32_t>(NumField(o, "chunkSectors", 0));
  p->basic.dev_sectors = static_cast<uint64_t>(NumField(o, "devSectors", 0));
  p->basic.virt_boundary_mask = static_cast<uint64_t>(NumField(o, "virtBoundaryMask", 0));
  p->discard.discard_alignment = static_cast<uint32_t>(NumField(o, "discardAlignment", 0));
  p->discard.discard_granularity = static_cast<uint32_t>(NumField(o, "discardGranularity", 0));
  p->discard.max_discard_sectors = static_cast<uint32_t>(NumField(o, "maxDiscardSectors", 0));
  p->discard.max_write_zeroes_sectors =
      static_cast<uint32_t>(NumField(o, "maxWriteZeroesSectors", 0));
  p->discard.max_discard_segments = static_cast<uint16_t>(NumField(o, "maxDiscardSegments", 0));
}

// One control command, start to finish, on a pool thread.
class ControlWorker : public Napi::AsyncWorker {
 public:
  ControlWorker(Napi::Env env, uint32_t cmd, uint32_t dev_id, uint64_t data0, int64_t timeout_ms)
      : Napi::AsyncWorker(env, "wsblk:ublkControl"),
        deferred_(Napi::Promise::Deferred::New(env)),
        cmd_(cmd), dev_id_(dev_id), data0_(data0), timeout_ms_(timeout_ms) {
    // One buffer big enough for every command's payload; it stays valid while the kernel may
    // still write to it (see Execute).
    buf_ = new (std::nothrow) uint8_t[sizeof(Params)]();
  }
  ~ControlWorker() override {
    if (!leak_buf_) delete[] buf_;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }
  uint8_t* buf() { return buf_; }
  void set_len(uint16_t len) { len_ = len; }

  void Execute() override {
    int cfd = open(kControlPath, O_RDWR | O_CLOEXEC);
    if (cfd < 0) {
      Fail(Stage::kOpen, errno);
      return;
    }
    Ring ring;
    int r = ring.Init(4, IORING_SETUP_SQE128);
    if (r < 0) {
      close(cfd);
      Fail(Stage::kRing, -r);
      return;
    }
    io_uring_sqe* sqe = ring.GetSqe();
    sqe->opcode = kOpUringCmd;
    sqe->fd = cfd;
    sqe->cmd_op = cmd_;
    sqe->user_data = kCommandTag;
    auto* c = reinterpret_cast<CtrlCmd*>(Ring::SqeCmd(sqe));
    c->dev_id = dev_id_;
    c->queue_id = 0xFFFF;
    c->len = len_;
    c->addr = len_ ? reinterpret_cast<uint64_t>(buf_) : 0;
    c->data[0] = data0_;
    r = ring.Submit();
    if (r < 0) {
      close(cfd);
      Fail(Stage::kSubmit, -r);
      return;
    }
    bool done = false;
    if (ring.WaitCqe(timeout_ms_) == 0) done = Reap(ring);
    if (!done) {
      // Timed out (the command blocks, e.g. START_DEV waiting for FETCHes). Ask io_uring to
      // cancel it: a blocked control command is interrupted and completes with -EINTR.
      if (io_uring_sqe* cs = ring.GetSqe()) {
        cs->opcode = IORING_OP_ASYNC_CANCEL;
        cs->addr = kCommandTag;
        cs->user_data = kCancelTag;
        ring.Submit();
      }
      for (int i = 0; i < 20 && !done; ++i) {
        if (ring.WaitCqe(kCancelGraceMs / 20) == 0) done = Reap(ring);
      }
      // Still running (e.g. waiting on a mutex only fatal signals break): the kernel may write
      // into buf_ later, so it must never be freed.
      if (!done) leak_buf_ = true;
      // A command that finished on its own during the grace period keeps its real result.
      if (!done || res_ == -EINTR || res_ == -ECANCELED) Fail(Stage::kTimeout, ETIMEDOUT);
      else if (res_ < 0) Fail(Stage::kCommand, -res_);
    } else if (res_ < 0) {
      Fail(Stage::kCommand, -res_);
    }
    ring.Close();  // a still-running command keeps its own references; teardown is async
    close(cfd);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (stage_ != Stage::kNone) {
      deferred_.Reject(
          ErrnoError(env, err_, FailureMessage(cmd_, dev_id_, stage_, err_, timeout_ms_),
                     stage_ == Stage::kOpen ? "open" : ControlCommandName(cmd_))
              .Value());
      return;
    }
    switch (cmd_) {
      case kCmdGetFeatures: {
        uint64_t f;
        std::memcpy(&f, buf_, sizeof f);
        deferred_.Resolve(Napi::Number::New(env, static_cast<double>(f)));
        return;
      }
      case kCmdAddDev:
      case kCmdGetDevInfo:
      case kCmdGetDevInfo2: {
        CtrlDevInfo d;
        std::memcpy(&d, buf_, sizeof d);
        deferred_.Resolve(DevInfoToJs(env, d));
        return;
      }
      case kCmdGetParams: {
        Params p;
        std::memcpy(&p, buf_, sizeof p);
        deferred_.Resolve(ParamsToJs(env, p));
        return;
      }
      default:
        deferred_.Resolve(Napi::Number::New(env, res_));
    }
  }

 private:
  // Consumes ready CQEs; true once the command's own CQE was seen.
  bool Reap(Ring& ring) {
    bool seen = false;
    ring.ForEachCqe([&](const io_uring_cqe& cqe) {
      if (cqe.user_data == kCommandTag) {
        res_ = cqe.res;
        seen = true;
      }
    });
    return seen;
  }
  void Fail(Stage stage, int err) {
    stage_ = stage;
    err_ = err;
  }

  Napi::Promise::Deferred deferred_;
  uint32_t cmd_;
  uint32_t dev_id_;
  uint64_t data0_;
  int64_t timeout_ms_;
  uint8_t* buf_ = nullptr;
  uint16_t len_ = 0;
  bool leak_buf_ = false;
  int res_ = 0;
  Stage stage_ = Stage::kNone;
  int err_ = 0;
};

bool IsKnownCommand(uint32_t cmd) {
  switch (cmd) {
    case kCmdGetDevInfo: case kCmdAddDev: case kCmdDelDev: case kCmdStartDev:
    case kCmdStopDev: case kCmdSetParams: case kCmdGetParams: case kCmdStartUserRecovery:
    case kCmdEndUserRecovery: case kCmdGetDevInfo2: case kCmdGetFeatures:
      return true;
    default:
      return false;
  }
}

// control(cmd, devId, arg, timeoutMs) -> Promise. arg: ADD_DEV {nrHwQueues, queueDepth,
// maxIoBufBytes, flags, ublksrvFlags}; SET_PARAMS the flat params object; START_DEV and
// END_USER_RECOVERY {pid}.
Napi::Value Control(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "control(cmd, devId, arg, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t cmd = info[0].As<Napi::Number>().Uint32Value();
  if (!IsKnownCommand(cmd)) {
    Napi::RangeError::New(env, "unknown ublk control command").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double dev = info[1].As<Napi::Number>().DoubleValue();
  uint32_t dev_id = dev < 0 ? 0xFFFFFFFFu : static_cast<uint32_t>(dev);
  Napi::Object arg = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  int64_t timeout_ms = info[3].As<Napi::Number>().Int64Value();
  if (timeout_ms <= 0) timeout_ms = 1;

  uint64_t data0 = 0;
  if (cmd == kCmdStartDev || cmd == kCmdEndUserRecovery)
    data0 = static_cast<uint64_t>(NumField(arg, "pid", getpid()));
  auto* w = new ControlWorker(env, cmd, dev_id, data0, timeout_ms);
  if (!w->buf()) {
    delete w;
    Napi::Error::New(env, "out of memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  switch (cmd) {
    case kCmdGetFeatures:
      w->set_len(kFeaturesLen);
      break;
    case kCmdAddDev: {
      CtrlDevInfo d;
      std::memset(&d, 0, sizeof d);
      d.nr_hw_queues = static_cast<uint16_t>(NumField(arg, "nrHwQueues", 1));
      d.queue_depth = static_cast<uint16_t>(NumField(arg, "queueDepth", 128));
      d.max_io_buf_bytes = static_cast<uint32_t>(NumField(arg, "maxIoBufBytes", 512 * 1024));
      d.dev_id = dev_id;
      d.ublksrv_pid = -1;
      d.flags = static_cast<uint64_t>(NumField(arg, "flags", 0));
      d.ublksrv_flags = static_cast<uint64_t>(NumField(arg, "ublksrvFlags", 0));
      std::memcpy(w->buf(), &d, sizeof d);
      w->set_len(sizeof d);
      break;
    }
    case kCmdGetDevInfo:
    case kCmdGetDevInfo2:
      w->set_len(sizeof(CtrlDevInfo));
      break;
    case kCmdSetParams: {
      Params p;
      ParamsFromJs(arg, &p);
      std::memcpy(w->buf(), &p, sizeof p);
      w->set_len(sizeof p);
      break;
    }
    case kCmdGetParams: {
      Params p;
      std::memset(&p, 0, sizeof p);
      p.len = sizeof p;
      std::memcpy(w->buf(), &p, sizeof p);
      w->set_len(sizeof p);
      break;
    }
    default:
      break;
  }
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

// probeControl() -> {ok: true} | {ok: false, code, errno, message}: opens and closes
// /dev/ublk-control and creates an SQE128 ring, synchronously (neither blocks).
Napi::Value ProbeControl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto fail = [&](int err, const std::string& message) {
    o.Set("ok", Napi::Boolean::New(env, false));
    o.Set("code", Napi::String::New(env, ErrnoName(err)));
    o.Set("errno", Napi::Number::New(env, -err));
    o.Set("message", Napi::String::New(env, message));
    return o;
  };
  int fd = open(kControlPath, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return fail(err, ControlOpenMessage(err));
  }
  close(fd);
  // Control commands need an SQE128 ring: seccomp (Docker) or io_uring_disabled stop it here.
  Ring ring;
  int r = ring.Init(2, IORING_SETUP_SQE128);
  if (r < 0) return fail(-r, FailureMessage(kCmdGetFeatures, 0xFFFFFFFFu, Stage::kRing, -r, 0));
  o.Set("ok", Napi::Boolean::New(env, true));
  return o;
}

}  // namespace

std::string KernelRelease() {
  struct utsname u;
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string ControlOpenMessage(int err) {
  switch (err) {
    case ENOENT:
      if (KernelOlderThan(6, 0))
        return "kernel too old (Linux " + KernelRelease() + " has no ublk; needs Linux >= 6.5)";
      return "ublk_drv is not loaded (modprobe ublk_drv): /dev/ublk-control does not exist";
    case EACCES:
    case EPERM:
      return "permission denied opening /dev/ublk-control (run as root)";
    case ENODEV:
    case ENXIO:
      return "ublk_drv is not loaded and could not be auto-loaded (modprobe ublk_drv): "
             "opening /dev/ublk-control failed with " + ErrnoName(err);
    default:
      return std::string("cannot open /dev/ublk-control: ") + std::strerror(err);
  }
}

const char* ControlCommandName(uint32_t cmd) {
  switch (cmd) {
    case kCmdGetDevInfo: return "GET_DEV_INFO";
    case kCmdAddDev: return "ADD_DEV";
    case kCmdDelDev: return "DEL_DEV";
    case kCmdStartDev: return "START_DEV";
    case kCmdStopDev: return "STOP_DEV";
    case kCmdSetParams: return "SET_PARAMS";
    case kCmdGetParams: return "GET_PARAMS";
    case kCmdStartUserRecovery: return "START_USER_RECOVERY";
    case kCmdEndUserRecovery: return "END_USER_RECOVERY";
    case kCmdGetDevInfo2: return "GET_DEV_INFO2";
    case kCmdGetFeatures: return "GET_FEATURES";
    default: return "UNKNOWN";
  }
}

void InitUblkControl(Napi::Env env, Napi::Object exports) {
  exports.Set("control", Napi::Function::New(env, Control, "control"));
  exports.Set("probeControl", Napi::Function::New(env, ProbeControl, "probeControl"));
  exports.Set("kernelRelease", Napi::Function::New(
                                   env, [](const Napi::CallbackInfo& i) -> Napi::Value {
                                     return Napi::String::New(i.Env(), KernelRelease());
                                   },
                                   "kernelRelease"));
  Napi::Object cmds = Napi::Object::New(env);
  for (uint32_t c : {kCmdGetDevInfo, kCmdAddDev, kCmdDelDev, kCmdStartDev, kCmdStopDev,
                     kCmdSetParams, kCmdGetParams, kCmdStartUserRecovery, kCmdEndUserRecovery,
                     kCmdGetDevInfo2, kCmdGetFeatures}) {
    cmds.Set(ControlCommandName(c), Napi::Number::New(env, c));
  }
  exports.Set("CTRL_CMD", cmds);
}

}  // namespace wsblk
