// File operations Node's fs module lacks: fallocate (punch hole, zero range).
#pragma once
#include <napi.h>

namespace wsblk {
void InitFileOps(Napi::Env env, Napi::Object exports);
}
