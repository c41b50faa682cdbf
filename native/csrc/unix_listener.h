// A listening Unix stream socket accepted from the libuv loop; each connection reaches JS as
// a file descriptor (see unix_listener.cc).
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>

namespace wsblk {

class UnixListener : public Napi::ObjectWrap<UnixListener> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit UnixListener(const Napi::CallbackInfo& info);
  ~UnixListener() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnEnvCleanup(void* self);
  void Start();
  void Accept(int status);
  void Release();

  Napi::Env env_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool polling_ = false;
  bool open_ = false;
  bool cleanup_hook_ = false;
  Napi::FunctionReference on_accept_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
};

}  // namespace wsblk
