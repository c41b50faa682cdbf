// JS errors that carry an errno, shaped like Node's system errors: message, code ('ENOENT'),
// errno (negative, as libuv reports it) and syscall, so the TS layer can map them.
#pragma once
#include <napi.h>

#include <string>

namespace wsblk {

// Symbolic name of a positive errno value ("ENOENT"); kernel-internal values included.
std::string ErrnoName(int err);
// err is a positive errno value.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& message, const char* syscall);
// Throws ErrnoError as a pending JS exception.
void ThrowErrno(Napi::Env env, int err, const std::string& message, const char* syscall);

}  // namespace wsblk
