// Entry point of the wsblk native addon: registers each part's functions.
#include <napi.h>

#include "fileops.h"
#include "sockio.h"
#include "ublk_control.h"
#include "ublk_queue.h"
#include "unix_listener.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  wsblk::InitFileOps(env, exports);
  wsblk::InitSockIo(env, exports);
  wsblk::InitUblkControl(env, exports);
  wsblk::UblkQueue::Init(env, exports);
  wsblk::UnixListener::Init(env, exports);
  return exports;
}

NODE_API_MODULE(wsblk_native, Init)
