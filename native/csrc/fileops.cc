#include "fileops.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/falloc.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace wsblk {
namespace {

// fallocate(fd, mode, offset, length) on the libuv thread pool; resolves with
// 0 or a positive errno so callers can fall back (EOPNOTSUPP -> write zeroes).
class FallocateWorker : public Napi::AsyncWorker {
 public:
  FallocateWorker(Napi::Env env, int fd, int mode, int64_t offset, int64_t length)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd), mode_(mode), offset_(offset), length_(length) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int r;
    do {
      r = ::fallocate(fd_, mode_, offset_, length_);
    } while (r < 0 && errno == EINTR);
    err_ = r < 0 ? errno : 0;
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), err_)); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_, mode_;
  int64_t offset_, length_;
  int err_ = 0;
};

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() ||
      !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "fallocate(fd, mode, offset, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new FallocateWorker(env, info[0].As<Napi::Number>().Int32Value(),
                                info[1].As<Napi::Number>().Int32Value(),
                                info[2].As<Napi::Number>().Int64Value(),
                                info[3].As<Napi::Number>().Int64Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// mallocTrimThreshold(bytes): glibc's M_TRIM_THRESHOLD, the free memory at the top of the
// heap that malloc keeps instead of giving back to the kernel (default 128 KiB, raised up to
// 64 MiB as big blocks are freed). Returns false where the C library is not glibc.
Napi::Value MallocTrimThreshold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int64Value() < 0) {
    Napi::TypeError::New(env, "mallocTrimThreshold(bytes >= 0)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#if defined(__GLIBC__)
  int64_t bytes = info[0].As<Napi::Number>().Int64Value();
  if (bytes > INT32_MAX) bytes = INT32_MAX;
  return Napi::Boolean::New(env, mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) == 1);
#else
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void InitFileOps(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("mallocTrimThreshold", Napi::Function::New(env, MallocTrimThreshold, "mallocTrimThreshold"));
  Napi::Object modes = Napi::Object::New(env);
  modes.Set("KEEP_SIZE", Napi::Number::New(env, FALLOC_FL_KEEP_SIZE));
  modes.Set("PUNCH_HOLE", Napi::Number::New(env, FALLOC_FL_PUNCH_HOLE));
  modes.Set("ZERO_RANGE", Napi::Number::New(env, FALLOC_FL_ZERO_RANGE));
  exports.Set("FALLOC", modes);
}

}  // namespace wsblk
