// Control commands on /dev/ublk-control: each runs on the libuv thread pool (never on the JS
// thread) through its own SQE128 io_uring, with a timeout, and resolves a promise.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace wsblk {

void InitUblkControl(Napi::Env env, Napi::Object exports);

// "ADD_DEV", "START_DEV", ... for messages.
const char* ControlCommandName(uint32_t cmd);
// The kernel release (uname -r), for "kernel too old" messages.
std::string KernelRelease();
// The message for a failed open of /dev/ublk-control (positive errno).
std::string ControlOpenMessage(int err);

}  // namespace wsblk
