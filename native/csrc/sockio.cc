#include "sockio.h"

#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>

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

// sendv(fd, buffers) -> bytes the kernel took (all, some, or 0), or a negative errno (-EAGAIN:
// the send buffer is full). Never blocks, never raises SIGPIPE. At most IOV_MAX buffers are
// offered; the caller writes whatever was not taken another way.
Napi::Value Sendv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "sendv(fd, buffers)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[1].As<Napi::Array>();
  uint32_t n = list.Length();
  if (n > IOV_MAX) n = IOV_MAX;
  struct iovec iov[IOV_MAX];
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsBuffer()) {
      Napi::TypeError::New(env, "sendv: every element must be a Buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto b = v.As<Napi::Buffer<uint8_t>>();
    iov[i].iov_base = b.Data();
    iov[i].iov_len = b.Length();
  }
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  ssize_t r;
  do {
    r = ::sendmsg(info[0].As<Napi::Number>().Int32Value(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return Napi::Number::New(env, r < 0 ? -errno : static_cast<double>(r));
}

}  // namespace

void InitSockIo(Napi::Env env, Napi::Object exports) {
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("sendv", Napi::Function::New(env, Sendv, "sendv"));
}

}  // namespace wsblk
