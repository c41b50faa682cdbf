// File and process operations Node lacks: fallocate (punch hole, zero range), and glibc's
// malloc trim threshold.
#pragma once
#include <napi.h>

namespace wsblk {
void InitFileOps(Napi::Env env, Napi::Object exports);
}
