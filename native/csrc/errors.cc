#include "errors.h"

#include <cstring>

#include "ublk_abi.h"

namespace wsblk {

std::string ErrnoName(int err) {
  if (err == ublk::kENOTSUPP) return "ENOTSUPP";
  const char* name = strerrorname_np(err);
  return name ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& message, const char* syscall) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  if (syscall) e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowErrno(Napi::Env env, int err, const std::string& message, const char* syscall) {
  ErrnoError(env, err, message, syscall).ThrowAsJavaScriptException();
}

}  // namespace wsblk
