// Descriptor calls Node does not offer: dup of a socket's descriptor, so that a socket from
// http's 'upgrade' can be re-opened as a net.Socket with onread.
#pragma once
#include <napi.h>

namespace wsblk {
void InitSockIo(Napi::Env env, Napi::Object exports);
}
