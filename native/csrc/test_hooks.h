// Test hooks (abiLayout, io_uring self-tests) and the ABI constants exported as `UBLK`.
#pragma once
#include <napi.h>

namespace wsblk {
void InitTestHooks(Napi::Env env, Napi::Object exports);
}
