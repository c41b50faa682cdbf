// Entry point of the wsblk native addon: registers each part's functions.
#include <napi.h>

#include "fileops.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  wsblk::InitFileOps(env, exports);
  return exports;
}

NODE_API_MODULE(wsblk_native, Init)
