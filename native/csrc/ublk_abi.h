// The ublk kernel ABI this addon uses, defined once (the system's linux-libc-dev 6.1 header is
// too old: no ioctl-encoded opcodes, no newer flags). Values follow the kernel's
// include/uapi/linux/ublk_cmd.h; the unit test test/src/unit/native-abi.test.ts checks every
// size, offset and opcode against the kernel's values.
#pragma once

#include <linux/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace wsblk::ublk {

constexpr const char* kControlPath = "/dev/ublk-control";
constexpr const char* kCharDevPrefix = "/dev/ublkc";
constexpr const char* kBlockDevPrefix = "/dev/ublkb";

// ---- structures (little-endian, layouts as in ublk_cmd.h) ----

// Control command header, carried in the 80-byte cmd area of a 128-byte SQE.
struct CtrlCmd {
  uint32_t dev_id;        // 0xFFFFFFFF: let the kernel pick (ADD_DEV)
  uint16_t queue_id;      // 0xFFFF: no queue
  uint16_t len;           // bytes at addr
  uint64_t addr;          // user buffer (dev_info, params, features)
  uint64_t data[1];       // START_DEV / END_USER_RECOVERY: daemon pid
  uint16_t dev_path_len;  // unprivileged devices only
  uint16_t pad;
  uint32_t reserved;
};

struct CtrlDevInfo {
  uint16_t nr_hw_queues;
  uint16_t queue_depth;
  uint16_t state;
  uint16_t pad0;
  uint32_t max_io_buf_bytes;
  uint32_t dev_id;
  int32_t ublksrv_pid;
  uint32_t pad1;
  uint64_t flags;
  uint64_t ublksrv_flags;  // free for the server
  uint32_t owner_uid;
  uint32_t owner_gid;
  uint64_t reserved1;
  uint64_t reserved2;
};

// One per tag in the per-queue descriptor area mmapped from /dev/ublkcN.
struct IoDesc {
  uint32_t op_flags;  // op in bits 0-7, UBLK_IO_F_* above
  uint32_t nr_sectors;
  uint64_t start_sector;
  uint64_t addr;
};

// I/O command (FETCH_REQ, COMMIT_AND_FETCH_REQ), in the cmd area of a 64-byte SQE.
struct IoCmd {
  uint16_t q_id;
  uint16_t tag;
  int32_t result;  // COMMIT: bytes done or -errno
  uint64_t addr;   // the tag's buffer
};

struct ParamBasic {
  uint32_t attrs;
  uint8_t logical_bs_shift;
  uint8_t physical_bs_shift;
  uint8_t io_opt_shift;
  uint8_t io_min_shift;
  uint32_t max_sectors;
  uint32_t chunk_sectors;
  uint64_t dev_sectors;
  uint64_t virt_boundary_mask;
};

struct ParamDiscard {
  uint32_t discard_alignment;
  uint32_t discard_granularity;
  uint32_t max_discard_sectors;
  uint32_t max_write_zeroes_sectors;
  uint16_t max_discard_segments;
  uint16_t reserved0;
};

struct ParamDevt {  // read-only, filled by GET_PARAMS
  uint32_t char_major;
  uint32_t char_minor;
  uint32_t disk_major;
  uint32_t disk_minor;
};

struct ParamZoned {
  uint32_t max_open_zones;
  uint32_t max_active_zones;
  uint32_t max_zone_append_sectors;
  uint8_t reserved[20];
};

struct Params {
  uint32_t len;    // bytes of this struct the caller fills / wants
  uint32_t types;  // kParamType*
  ParamBasic basic;
  ParamDiscard discard;
  ParamDevt devt;
  ParamZoned zoned;
};

static_assert(sizeof(CtrlCmd) == 32);
static_assert(offsetof(CtrlCmd, queue_id) == 4 && offsetof(CtrlCmd, len) == 6);
static_assert(offsetof(CtrlCmd, addr) == 8 && offsetof(CtrlCmd, data) == 16);
static_assert(offsetof(CtrlCmd, dev_path_len) == 24);
static_assert(sizeof(CtrlDevInfo) == 64);
static_assert(offsetof(CtrlDevInfo, state) == 4 && offsetof(CtrlDevInfo, max_io_buf_bytes) == 8);
static_assert(offsetof(CtrlDevInfo, dev_id) == 12 && offsetof(CtrlDevInfo, ublksrv_pid) == 16);
static_assert(offsetof(CtrlDevInfo, flags) == 24 && offsetof(CtrlDevInfo, ublksrv_flags) == 32);
static_assert(offsetof(CtrlDevInfo, owner_uid) == 40 && offsetof(CtrlDevInfo, owner_gid) == 44);
static_assert(sizeof(IoDesc) == 24 && offsetof(IoDesc, start_sector) == 8);
static_assert(sizeof(IoCmd) == 16 && offsetof(IoCmd, result) == 4 && offsetof(IoCmd, addr) == 8);
static_assert(sizeof(ParamBasic) == 32 && offsetof(ParamBasic, max_sectors) == 8);
static_assert(offsetof(ParamBasic, dev_sectors) == 16);
static_assert(sizeof(ParamDiscard) == 20);
static_assert(offsetof(Params, basic) == 8 && offsetof(Params, discard) == 40);
static_assert(offsetof(Params, devt) == 60 && offsetof(Params, zoned) == 76);

// ---- commands (ioctl-encoded; legacy numeric opcodes are never used) ----

constexpr uint32_t kCmdGetDevInfo = _IOR('u', 0x02, CtrlCmd);
constexpr uint32_t kCmdAddDev = _IOWR('u', 0x04, CtrlCmd);
constexpr uint32_t kCmdDelDev = _IOWR('u', 0x05, CtrlCmd);
constexpr uint32_t kCmdStartDev = _IOWR('u', 0x06, CtrlCmd);
constexpr uint32_t kCmdStopDev = _IOWR('u', 0x07, CtrlCmd);
constexpr uint32_t kCmdSetParams = _IOWR('u', 0x08, CtrlCmd);
constexpr uint32_t kCmdGetParams = _IOR('u', 0x09, CtrlCmd);
constexpr uint32_t kCmdStartUserRecovery = _IOWR('u', 0x10, CtrlCmd);
constexpr uint32_t kCmdEndUserRecovery = _IOWR('u', 0x11, CtrlCmd);
constexpr uint32_t kCmdGetDevInfo2 = _IOR('u', 0x12, CtrlCmd);
constexpr uint32_t kCmdGetFeatures = _IOR('u', 0x13, CtrlCmd);

constexpr uint32_t kIoFetchReq = _IOWR('u', 0x20, IoCmd);
constexpr uint32_t kIoCommitAndFetchReq = _IOWR('u', 0x21, IoCmd);
constexpr uint32_t kIoNeedGetData = _IOWR('u', 0x22, IoCmd);

static_assert(kCmdGetDevInfo == 0x80207502u && kCmdAddDev == 0xC0207504u);
static_assert(kCmdDelDev == 0xC0207505u && kCmdStartDev == 0xC0207506u);
static_assert(kCmdStopDev == 0xC0207507u && kCmdSetParams == 0xC0207508u);
static_assert(kCmdGetParams == 0x80207509u && kCmdStartUserRecovery == 0xC0207510u);
static_assert(kCmdEndUserRecovery == 0xC0207511u && kCmdGetDevInfo2 == 0x80207512u);
static_assert(kCmdGetFeatures == 0x80207513u);
static_assert(kIoFetchReq == 0xC0107520u && kIoCommitAndFetchReq == 0xC0107521u);
static_assert(kIoNeedGetData == 0xC0107522u);

// ---- feature flags (dev_info.flags, GET_FEATURES) ----
constexpr uint64_t kFeatureZeroCopy = 1ull << 0;
constexpr uint64_t kFeatureUringCmdCompInTask = 1ull << 1;
constexpr uint64_t kFeatureNeedGetData = 1ull << 2;
constexpr uint64_t kFeatureUserRecovery = 1ull << 3;
constexpr uint64_t kFeatureUserRecoveryReissue = 1ull << 4;
constexpr uint64_t kFeatureUnprivilegedDev = 1ull << 5;
constexpr uint64_t kFeatureCmdIoctlEncode = 1ull << 6;
constexpr uint64_t kFeatureUserCopy = 1ull << 7;
constexpr uint64_t kFeatureZoned = 1ull << 8;
constexpr uint64_t kFeatureUserRecoveryFailIo = 1ull << 9;

// ---- device states ----
constexpr uint16_t kStateDead = 0;
constexpr uint16_t kStateLive = 1;
constexpr uint16_t kStateQuiesced = 2;
constexpr uint16_t kStateFailIo = 3;

// ---- params ----
constexpr uint32_t kParamTypeBasic = 1u << 0;
constexpr uint32_t kParamTypeDiscard = 1u << 1;
constexpr uint32_t kParamTypeDevt = 1u << 2;
constexpr uint32_t kAttrReadOnly = 1u << 0;
constexpr uint32_t kAttrRotational = 1u << 1;
constexpr uint32_t kAttrVolatileCache = 1u << 2;
constexpr uint32_t kAttrFua = 1u << 3;

// ---- I/O ops and flags (IoDesc.op_flags) ----
constexpr uint32_t kOpRead = 0;
constexpr uint32_t kOpWrite = 1;
constexpr uint32_t kOpFlush = 2;
constexpr uint32_t kOpDiscard = 3;
constexpr uint32_t kOpWriteSame = 4;
constexpr uint32_t kOpWriteZeroes = 5;
constexpr uint32_t kOpMask = 0xff;
constexpr uint32_t kIoFlagFailfastDev = 1u << 8;
constexpr uint32_t kIoFlagFailfastTransport = 1u << 9;
constexpr uint32_t kIoFlagFailfastDriver = 1u << 10;
constexpr uint32_t kIoFlagFua = 1u << 13;
constexpr uint32_t kIoFlagNoUnmap = 1u << 15;

// ---- FETCH / COMMIT completion results ----
constexpr int kIoResOk = 0;
constexpr int kIoResNeedGetData = 1;
constexpr int kIoResAbort = -ENODEV;  // queue aborted: do not refetch

// ---- limits and the descriptor area ----
constexpr unsigned kMaxQueueDepth = 4096;
constexpr unsigned kMaxNrQueues = 4096;
constexpr uint64_t kCmdBufOffset = 0;  // UBLKSRV_CMD_BUF_OFFSET
constexpr uint32_t kFeaturesLen = 8;
// The kernel's ENOTSUPP (524): not in userspace errno.h, returned by old ublk for unknown cmds.
constexpr int kENOTSUPP = 524;

constexpr uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

// Byte offset in /dev/ublkcN of queue q's descriptor area (each queue's slot is sized for the
// maximum depth), and the length to map for `depth` tags.
inline uint64_t IodAreaOffset(unsigned q, uint64_t page_size) {
  return kCmdBufOffset + q * RoundUp(uint64_t{kMaxQueueDepth} * sizeof(IoDesc), page_size);
}
inline uint64_t IodAreaLength(unsigned depth, uint64_t page_size) {
  return RoundUp(uint64_t{depth} * sizeof(IoDesc), page_size);
}

}  // namespace wsblk::ublk
