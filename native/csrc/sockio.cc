#include "sockio.h"

#include <cerrno>
#include <fcntl.h>

namespace wsblk {
namespace {

// dupFd(fd) -> a close-on-exec duplicate, or a negative errno.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "dupFd(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r = ::fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
  return Napi::Number::New(env, r < 0 ? -errno : r);
}

}  // namespace

void InitSockIo(Napi::Env env, Napi::Object exports) {
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
}

}  // namespace wsblk
