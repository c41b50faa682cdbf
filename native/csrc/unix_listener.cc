// A listening Unix stream socket whose connections are accepted on the libuv loop and handed
// to JS as file descriptors. JS wraps each in net.Socket({ fd, onread }), which reads into
// buffers of its own choosing: net.Server's sockets cannot, and read every chunk into a fresh
// 64 KiB buffer (garbage for the collector: 1 MiB of it per 1 MiB NBD write).
#include "unix_listener.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <uv.h>

#include "errors.h"
#include "uv_poll_util.h"

namespace wsblk {

void UnixListener::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "UnixListener",
                                   {InstanceMethod<&UnixListener::Close>("close"),
                                    InstanceMethod<&UnixListener::Resume>("resume")});
  exports.Set("UnixListener", cls);
}

// new UnixListener(path, backlog, onAccept): onAccept(fd) for each connection, onAccept(-errno)
// when accept fails for another reason than a vanished client (then accepting pauses until
// resume(), so that EMFILE does not spin the loop).
UnixListener::UnixListener(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<UnixListener>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "new UnixListener(path, backlog, onAccept)").ThrowAsJavaScriptException();
    return;
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    ThrowErrno(env, ENAMETOOLONG,
               "socket path '" + path + "' must be 1 to " + std::to_string(sizeof addr.sun_path - 1) +
                   " bytes long",
               "bind");
    return;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    ThrowErrno(env, errno, std::string("socket: ") + std::strerror(errno), "socket");
    return;
  }
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    const int err = errno;
    Release();
    ThrowErrno(env, err, "cannot listen on " + path + ": " + std::strerror(err), "bind");
    return;
  }
  if (listen(fd_, info[1].As<Napi::Number>().Int32Value()) < 0) {
    const int err = errno;
    Release();
    ThrowErrno(env, err, "cannot listen on " + path + ": " + std::strerror(err), "listen");
    return;
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll_ = new uv_poll_t;
  int r = uv_poll_init(loop, poll_, fd_);
  if (r < 0) {
    delete poll_;
    poll_ = nullptr;
    Release();
    ThrowErrno(env, -r, std::string("uv_poll_init: ") + std::strerror(-r), "uv_poll_init");
    return;
  }
  poll_->data = this;
  on_accept_ = Napi::Persistent(info[2].As<Napi::Function>());
  ctx_ = std::make_unique<Napi::AsyncContext>(env, "wsblk:UnixListener");
  // An open listener must not be collected: the poll handle refers to it.
  Ref();
  open_ = true;
  napi_add_env_cleanup_hook(env, &UnixListener::OnEnvCleanup, this);
  cleanup_hook_ = true;
  Start();
}

UnixListener::~UnixListener() { Release(); }

void UnixListener::Start() {
  if (poll_ && !polling_ && uv_poll_start(poll_, UV_READABLE, &UnixListener::OnPoll) == 0)
    polling_ = true;
}

void UnixListener::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<UnixListener*>(handle->data);
  if (self) self->Accept(status);
}

void UnixListener::Accept(int status) {
  if (!open_) return;
  Napi::HandleScope scope(env_);
  auto emit = [&](int value) {
    on_accept_.MakeCallback(Value(), {Napi::Number::New(env_, value)}, *ctx_);
    if (env_.IsExceptionPending()) {
      napi_value err;
      napi_get_and_clear_last_exception(env_, &err);
      napi_fatal_exception(env_, err);
    }
  };
  if (status < 0) {
    uv_poll_stop(poll_);
    polling_ = false;
    emit(status);
    return;
  }
  // A bounded batch per wakeup, so that a flood of clients does not starve the loop.
  for (int i = 0; i < 64 && open_; ++i) {
    const int cfd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd >= 0) {
      emit(cfd);
      continue;
    }
    const int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    uv_poll_stop(poll_);
    polling_ = false;
    emit(-err);
    return;
  }
}

Napi::Value UnixListener::Resume(const Napi::CallbackInfo& info) {
  if (open_) Start();
  return info.Env().Undefined();
}

Napi::Value UnixListener::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

void UnixListener::OnEnvCleanup(void* self) {
  auto* l = static_cast<UnixListener*>(self);
  l->cleanup_hook_ = false;
  l->Release();
}

void UnixListener::Release() {
  ClosePoll(poll_);
  polling_ = false;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, &UnixListener::OnEnvCleanup, this);
    cleanup_hook_ = false;
  }
  if (open_) {
    open_ = false;
    Unref();
  }
}

}  // namespace wsblk
