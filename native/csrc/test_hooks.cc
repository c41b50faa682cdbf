// The test addon (wsblk_native_test.node, never loaded in production): hooks for unit tests that
// run without ublk: the ABI layout and constants as compiled, the raw io_uring wrapper against a
// regular file, and the eventfd + uv_poll batch path with NOPs.
#include <fcntl.h>
#include <napi.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "errors.h"
#include "event_ring.h"
#include "ublk_abi.h"
#include "uring.h"

namespace wsblk {
namespace {

using namespace ublk;

#define FIELD(obj, type, member, name) obj.Set(name, Napi::Number::New(env, offsetof(type, member)))

Napi::Value AbiLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object sizes = Napi::Object::New(env);
  sizes.Set("ctrlCmd", Napi::Number::New(env, sizeof(CtrlCmd)));
  sizes.Set("ctrlDevInfo", Napi::Number::New(env, sizeof(CtrlDevInfo)));
  sizes.Set("ioDesc", Napi::Number::New(env, sizeof(IoDesc)));
  sizes.Set("ioCmd", Napi::Number::New(env, sizeof(IoCmd)));
  sizes.Set("paramBasic", Napi::Number::New(env, sizeof(ParamBasic)));
  sizes.Set("paramDiscard", Napi::Number::New(env, sizeof(ParamDiscard)));
  sizes.Set("params", Napi::Number::New(env, sizeof(Params)));
  sizes.Set("ioUringSqe", Napi::Number::New(env, sizeof(io_uring_sqe)));

  Napi::Object offsets = Napi::Object::New(env);
  Napi::Object cmd = Napi::Object::New(env);
  FIELD(cmd, CtrlCmd, dev_id, "devId");
  FIELD(cmd, CtrlCmd, queue_id, "queueId");
  FIELD(cmd, CtrlCmd, len, "len");
  FIELD(cmd, CtrlCmd, addr, "addr");
  FIELD(cmd, CtrlCmd, data, "data");
  FIELD(cmd, CtrlCmd, dev_path_len, "devPathLen");
  offsets.Set("ctrlCmd", cmd);
  Napi::Object di = Napi::Object::New(env);
  FIELD(di, CtrlDevInfo, nr_hw_queues, "nrHwQueues");
  FIELD(di, CtrlDevInfo, queue_depth, "queueDepth");
  FIELD(di, CtrlDevInfo, state, "state");
  FIELD(di, CtrlDevInfo, max_io_buf_bytes, "maxIoBufBytes");
  FIELD(di, CtrlDevInfo, dev_id, "devId");
  FIELD(di, CtrlDevInfo, ublksrv_pid, "ublksrvPid");
  FIELD(di, CtrlDevInfo, flags, "flags");
  FIELD(di, CtrlDevInfo, ublksrv_flags, "ublksrvFlags");
  FIELD(di, CtrlDevInfo, owner_uid, "ownerUid");
  FIELD(di, CtrlDevInfo, owner_gid, "ownerGid");
  offsets.Set("ctrlDevInfo", di);
  Napi::Object iod = Napi::Object::New(env);
  FIELD(iod, IoDesc, op_flags, "opFlags");
  FIELD(iod, IoDesc, nr_sectors, "nrSectors");
  FIELD(iod, IoDesc, start_sector, "startSector");
  FIELD(iod, IoDesc, addr, "addr");
  offsets.Set("ioDesc", iod);
  Napi::Object ioc = Napi::Object::New(env);
  FIELD(ioc, IoCmd, q_id, "qId");
  FIELD(ioc, IoCmd, tag, "tag");
  FIELD(ioc, IoCmd, result, "result");
  FIELD(ioc, IoCmd, addr, "addr");
  offsets.Set("ioCmd", ioc);
  Napi::Object pb = Napi::Object::New(env);
  FIELD(pb, ParamBasic, attrs, "attrs");
  FIELD(pb, ParamBasic, logical_bs_shift, "logicalBsShift");
  FIELD(pb, ParamBasic, physical_bs_shift, "physicalBsShift");
  FIELD(pb, ParamBasic, io_opt_shift, "ioOptShift");
  FIELD(pb, ParamBasic, io_min_shift, "ioMinShift");
  FIELD(pb, ParamBasic, max_sectors, "maxSectors");
  FIELD(pb, ParamBasic, chunk_sectors, "chunkSectors");
  FIELD(pb, ParamBasic, dev_sectors, "devSectors");
  FIELD(pb, ParamBasic, virt_boundary_mask, "virtBoundaryMask");
  offsets.Set("paramBasic", pb);
  Napi::Object pd = Napi::Object::New(env);
  FIELD(pd, ParamDiscard, discard_alignment, "discardAlignment");
  FIELD(pd, ParamDiscard, discard_granularity, "discardGranularity");
  FIELD(pd, ParamDiscard, max_discard_sectors, "maxDiscardSectors");
  FIELD(pd, ParamDiscard, max_write_zeroes_sectors, "maxWriteZeroesSectors");
  FIELD(pd, ParamDiscard, max_discard_segments, "maxDiscardSegments");
  offsets.Set("paramDiscard", pd);
  Napi::Object pp = Napi::Object::New(env);
  FIELD(pp, Params, len, "len");
  FIELD(pp, Params, types, "types");
  FIELD(pp, Params, basic, "basic");
  FIELD(pp, Params, discard, "discard");
  FIELD(pp, Params, devt, "devt");
  FIELD(pp, Params, zoned, "zoned");
  offsets.Set("params", pp);
  Napi::Object sqe = Napi::Object::New(env);
  sqe.Set("cmdOp", Napi::Number::New(env, offsetof(io_uring_sqe, cmd_op)));
  sqe.Set("cmd", Napi::Number::New(env, 48));
  offsets.Set("ioUringSqe", sqe);

  Napi::Object opcodes = Napi::Object::New(env);
  auto op = [&](const char* k, uint32_t v) { opcodes.Set(k, Napi::Number::New(env, v)); };
  op("GET_DEV_INFO", kCmdGetDevInfo);
  op("ADD_DEV", kCmdAddDev);
  op("DEL_DEV", kCmdDelDev);
  op("START_DEV", kCmdStartDev);
  op("STOP_DEV", kCmdStopDev);
  op("SET_PARAMS", kCmdSetParams);
  op("GET_PARAMS", kCmdGetParams);
  op("START_USER_RECOVERY", kCmdStartUserRecovery);
  op("END_USER_RECOVERY", kCmdEndUserRecovery);
  op("GET_DEV_INFO2", kCmdGetDevInfo2);
  op("GET_FEATURES", kCmdGetFeatures);
  op("FETCH_REQ", kIoFetchReq);
  op("COMMIT_AND_FETCH_REQ", kIoCommitAndFetchReq);
  op("NEED_GET_DATA", kIoNeedGetData);
  op("IORING_OP_URING_CMD", kOpUringCmd);

  Napi::Object iodArea = Napi::Object::New(env);
  iodArea.Set("queue1Offset4k", Napi::Number::New(env, static_cast<double>(IodAreaOffset(1, 4096))));
  iodArea.Set("depth128Length4k",
              Napi::Number::New(env, static_cast<double>(IodAreaLength(128, 4096))));
  iodArea.Set("depth200Length4k",
              Napi::Number::New(env, static_cast<double>(IodAreaLength(200, 4096))));

  Napi::Object o = Napi::Object::New(env);
  o.Set("sizes", sizes);
  o.Set("offsets", offsets);
  o.Set("opcodes", opcodes);
  o.Set("iodArea", iodArea);
  return o;
}

// Every constant the TS layer mirrors, as compiled (abi.ts is tested against these).
Napi::Object AbiConstants(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  set("F_ZERO_COPY", kFeatureZeroCopy);
  set("F_URING_CMD_COMP_IN_TASK", kFeatureUringCmdCompInTask);
  set("F_NEED_GET_DATA", kFeatureNeedGetData);
  set("F_USER_RECOVERY", kFeatureUserRecovery);
  set("F_USER_RECOVERY_REISSUE", kFeatureUserRecoveryReissue);
  set("F_UNPRIVILEGED_DEV", kFeatureUnprivilegedDev);
  set("F_CMD_IOCTL_ENCODE", kFeatureCmdIoctlEncode);
  set("F_USER_COPY", kFeatureUserCopy);
  set("F_ZONED", kFeatureZoned);
  set("F_USER_RECOVERY_FAIL_IO", kFeatureUserRecoveryFailIo);
  set("S_DEV_DEAD", kStateDead);
  set("S_DEV_LIVE", kStateLive);
  set("S_DEV_QUIESCED", kStateQuiesced);
  set("S_DEV_FAIL_IO", kStateFailIo);
  set("PARAM_TYPE_BASIC", kParamTypeBasic);
  set("PARAM_TYPE_DISCARD", kParamTypeDiscard);
  set("PARAM_TYPE_DEVT", kParamTypeDevt);
  set("ATTR_READ_ONLY", kAttrReadOnly);
  set("ATTR_ROTATIONAL", kAttrRotational);
  set("ATTR_VOLATILE_CACHE", kAttrVolatileCache);
  set("ATTR_FUA", kAttrFua);
  set("IO_OP_READ", kOpRead);
  set("IO_OP_WRITE", kOpWrite);
  set("IO_OP_FLUSH", kOpFlush);
  set("IO_OP_DISCARD", kOpDiscard);
  set("IO_OP_WRITE_SAME", kOpWriteSame);
  set("IO_OP_WRITE_ZEROES", kOpWriteZeroes);
  set("IO_F_FAILFAST_DEV", kIoFlagFailfastDev);
  set("IO_F_FAILFAST_TRANSPORT", kIoFlagFailfastTransport);
  set("IO_F_FAILFAST_DRIVER", kIoFlagFailfastDriver);
  set("IO_F_FUA", kIoFlagFua);
  set("IO_F_NOUNMAP", kIoFlagNoUnmap);
  set("IO_RES_OK", kIoResOk);
  set("IO_RES_NEED_GET_DATA", kIoResNeedGetData);
  set("IO_RES_ABORT", kIoResAbort);
  set("MAX_QUEUE_DEPTH", kMaxQueueDepth);
  set("MAX_NR_QUEUES", kMaxNrQueues);
  return o;
}

bool IsCloexec(int fd) {
  int f = fcntl(fd, F_GETFD);
  return f >= 0 && (f & FD_CLOEXEC);
}

// Submits one SQE (already prepared) and returns its CQE result, or -errno of the submit.
int RunOne(Ring& ring) {
  int r = ring.Submit(1);
  if (r < 0) return r;
  int res = -EIO;
  ring.ForEachCqe([&](const io_uring_cqe& c) { res = c.res; });
  return res;
}

// uringFileRoundTrip(path, size) -> {written, read, equal, ringCloexec, sqe128Nop}: writes a
// pattern with IORING_OP_WRITE and reads it back with IORING_OP_READ on the same Ring code the
// queues use, and runs a NOP on an SQE128 ring (the control rings' shape).
Napi::Value UringFileRoundTrip(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "uringFileRoundTrip(path, size)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  size_t size = info[1].As<Napi::Number>().Uint32Value();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    ThrowErrno(env, errno, "open " + path + ": " + std::strerror(errno), "open");
    return env.Undefined();
  }
  Ring ring;
  int r = ring.Init(8, 0);
  if (r < 0) {
    close(fd);
    ThrowErrno(env, -r, std::string("io_uring_setup: ") + std::strerror(-r), "io_uring_setup");
    return env.Undefined();
  }
  std::vector<uint8_t> out(size), in(size, 0);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(i * 131 + 7);
  io_uring_sqe* sqe = ring.GetSqe();
  sqe->opcode = IORING_OP_WRITE;
  sqe->fd = fd;
  sqe->addr = reinterpret_cast<uint64_t>(out.data());
  sqe->len = static_cast<uint32_t>(size);
  sqe->off = 0;
  sqe->user_data = 1;
  int written = RunOne(ring);
  sqe = ring.GetSqe();
  sqe->opcode = IORING_OP_READ;
  sqe->fd = fd;
  sqe->addr = reinterpret_cast<uint64_t>(in.data());
  sqe->len = static_cast<uint32_t>(size);
  sqe->off = 0;
  sqe->user_data = 2;
  int read_bytes = RunOne(ring);
  bool cloexec = IsCloexec(ring.fd());
  ring.Close();
  close(fd);

  Ring big;
  int nop = big.Init(4, IORING_SETUP_SQE128);
  if (nop == 0) {
    io_uring_sqe* s = big.GetSqe();
    s->opcode = IORING_OP_NOP;
    s->user_data = 3;
    nop = RunOne(big);
  }

  Napi::Object o = Napi::Object::New(env);
  o.Set("written", Napi::Number::New(env, written));
  o.Set("read", Napi::Number::New(env, read_bytes));
  o.Set("equal", Napi::Boolean::New(env, written == static_cast<int>(size) &&
                                             read_bytes == static_cast<int>(size) && out == in));
  o.Set("ringCloexec", Napi::Boolean::New(env, cloexec));
  o.Set("sqe128Nop", Napi::Number::New(env, nop));
  return o;
}

// A batch of NOPs submitted from JS with one io_uring_enter and reaped in the uv_poll callback,
// as the queues reap requests.
class NopBatch {
 public:
  NopBatch(Napi::Env env, unsigned n)
      : env_(env), deferred_(Napi::Promise::Deferred::New(env)), n_(n),
        ctx_(std::make_unique<Napi::AsyncContext>(env, "wsblk:NopBatch")) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Returns -errno on setup failure (then the caller rejects and deletes).
  int Start() {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env_, &loop);
    int r = ev_.Init(loop, n_, 0, &NopBatch::OnReady, this);
    if (r < 0) return r;
    for (unsigned i = 0; i < n_; ++i) {
      io_uring_sqe* sqe = ev_.ring().GetSqe();
      if (!sqe) return -ENOSPC;
      sqe->opcode = IORING_OP_NOP;
      sqe->user_data = i;
    }
    r = ev_.ring().Submit();
    if (r < 0) return r;
    submitted_ = static_cast<unsigned>(r);
    cloexec_ = IsCloexec(ev_.ring().fd());
    return 0;
  }

 private:
  static void OnReady(void* p) {
    auto* self = static_cast<NopBatch*>(p);
    unsigned got = self->ev_.ring().ForEachCqe([&](const io_uring_cqe&) {});
    if (got == 0) return;
    self->got_ += got;
    self->batches_++;
    if (self->got_ < self->n_) return;
    {
      Napi::HandleScope scope(self->env_);
      Napi::CallbackScope cb(self->env_, *self->ctx_);  // runs microtasks on close
      Napi::Object o = Napi::Object::New(self->env_);
      o.Set("submitted", Napi::Number::New(self->env_, self->submitted_));
      o.Set("cqes", Napi::Number::New(self->env_, self->got_));
      o.Set("batches", Napi::Number::New(self->env_, self->batches_));
      o.Set("ringCloexec", Napi::Boolean::New(self->env_, self->cloexec_));
      self->deferred_.Resolve(o);
    }
    delete self;  // closes the EventRing; allowed from inside its own poll callback
  }

  Napi::Env env_;
  Napi::Promise::Deferred deferred_;
  unsigned n_;
  unsigned submitted_ = 0, got_ = 0, batches_ = 0;
  bool cloexec_ = false;
  std::unique_ptr<Napi::AsyncContext> ctx_;
  EventRing ev_;
};

Napi::Value UringNopBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value()
                                                       : 0;
  if (n < 1 || n > 4096) {
    Napi::RangeError::New(env, "uringNopBatch(n): 1 <= n <= 4096").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* b = new NopBatch(env, n);
  Napi::Promise p = b->Promise();
  int r = b->Start();
  if (r < 0) {
    delete b;
    ThrowErrno(env, -r, std::string("uringNopBatch: ") + std::strerror(-r), "io_uring");
    return env.Undefined();
  }
  return p;
}

}  // namespace
}  // namespace wsblk

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace wsblk;
  exports.Set("abiLayout", Napi::Function::New(env, AbiLayout, "abiLayout"));
  exports.Set("uringFileRoundTrip", Napi::Function::New(env, UringFileRoundTrip, "uringFileRoundTrip"));
  exports.Set("uringNopBatch", Napi::Function::New(env, UringNopBatch, "uringNopBatch"));
  exports.Set("UBLK", AbiConstants(env));
  return exports;
}

NODE_API_MODULE(wsblk_native_test, Init)
