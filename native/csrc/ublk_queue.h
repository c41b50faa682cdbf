// One ublk queue served from the JS thread. See the design note at the top of ublk_queue.cc.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "event_ring.h"

namespace wsblk {

class UblkQueue : public Napi::ObjectWrap<UblkQueue> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);

  // new UblkQueue(charDevFd, devId, queueId, depth, maxIoBytes, onBatch(nRequests, nFaults));
  // charDevFd comes from openCharDevice(devId) and is dup'ed.
  explicit UblkQueue(const Napi::CallbackInfo& info);
  ~UblkQueue() override;

 private:
  enum TagState : uint8_t { kIdle, kInKernel, kHeldByJs, kAborted };

  Napi::Value FetchAll(const Napi::CallbackInfo& info);
  Napi::Value Commit(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static void OnReady(void* self);
  static void OnEnvCleanup(void* self);
  void Reap();
  // Releases the ring, eventfd, descriptor mapping and /dev/ublkcN. The tag buffers live on
  // until their ArrayBuffer is collected.
  // from_teardown: called by the destructor or the env cleanup hook (no JS references left).
  void Release(bool from_teardown);
  int SubmitOrThrow(Napi::Env env, const char* what);

  Napi::Env env_;
  uint32_t dev_id_ = 0;
  uint32_t q_id_ = 0;
  uint32_t depth_ = 0;
  uint32_t max_io_ = 0;
  int cdev_fd_ = -1;
  const uint8_t* iods_ = nullptr;  // kernel-written descriptors, PROT_READ
  size_t iods_len_ = 0;
  uint8_t* bufs_ = nullptr;  // depth * max_io, owned by the external ArrayBuffer
  EventRing ev_;
  std::vector<uint8_t> tag_state_;
  double* requests_ = nullptr;  // per request: tag, op_flags, nr_sectors, start_sector
  int32_t* faults_ = nullptr;   // per fault: tag, res
  int32_t* commits_ = nullptr;  // filled by JS: tag, result
  Napi::Reference<Napi::Value> arrays_;  // keeps the three shared arrays alive
  Napi::FunctionReference on_batch_;
  std::unique_ptr<Napi::AsyncContext> async_ctx_;
  bool open_ = false;
  bool cleanup_hook_ = false;
};

}  // namespace wsblk
