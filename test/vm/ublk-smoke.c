// Harness self-test, run in the VM by selftest.sh: ADD_DEV a ublk device through
// /dev/ublk-control (raw io_uring, no liburing), check that /dev/ublkcN appears,
// GET_DEV_INFO it, DEL_DEV it. It never starts the device (that needs a server).
// Build: cc -O2 -o ublk-smoke ublk-smoke.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/io_uring.h>

#define SETUP_SQE128 (1U << 10)
#define OP_URING_CMD 46
#define UBLK_ADD_DEV 0xC0207504u
#define UBLK_DEL_DEV 0xC0207505u
#define UBLK_GET_DEV_INFO 0x80207502u

struct ctrl_cmd { uint32_t dev_id; uint16_t queue_id, len; uint64_t addr, data0; uint16_t dev_path_len, pad; uint32_t reserved; };
struct dev_info {
  uint16_t nr_hw_queues, queue_depth, state, pad0; uint32_t max_io_buf_bytes, dev_id;
  int32_t ublksrv_pid; uint32_t pad1; uint64_t flags, ublksrv_flags; uint32_t owner_uid, owner_gid;
  uint64_t reserved1, reserved2;
};
_Static_assert(sizeof(struct ctrl_cmd) == 32, "ctrl_cmd");
_Static_assert(sizeof(struct dev_info) == 64, "dev_info");

static int ring_fd, ctl_fd;
static uint32_t *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static uint8_t *sqes;
static struct io_uring_cqe *cqes;

static int ctrl(uint32_t op, struct ctrl_cmd *c) {
  uint32_t t = *sq_tail, i = t & *sq_mask;
  uint8_t *sqe = sqes + 128 * i;
  memset(sqe, 0, 128);
  sqe[0] = OP_URING_CMD;
  *(int32_t *)(sqe + 4) = ctl_fd;          // fd
  *(uint32_t *)(sqe + 8) = op;             // cmd_op (union with off)
  memcpy(sqe + 48, c, sizeof *c);          // cmd[] (union with addr3)
  sq_array[i] = i;
  __atomic_store_n(sq_tail, t + 1, __ATOMIC_RELEASE);
  if (syscall(__NR_io_uring_enter, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) return -errno;
  uint32_t h = *cq_head;
  if (h == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) return -EAGAIN;
  int res = cqes[h & *cq_mask].res;
  __atomic_store_n(cq_head, h + 1, __ATOMIC_RELEASE);
  return res;
}

int main(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = SETUP_SQE128;
  ring_fd = syscall(__NR_io_uring_setup, 4, &p);
  if (ring_fd < 0) { perror("io_uring_setup"); return 1; }
  uint8_t *sq = mmap(0, p.sq_off.array + p.sq_entries * 4, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
  uint8_t *cq = mmap(0, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_CQ_RING);
  sqes = mmap(0, p.sq_entries * 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
  if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
  sq_tail = (uint32_t *)(sq + p.sq_off.tail); sq_mask = (uint32_t *)(sq + p.sq_off.ring_mask);
  sq_array = (uint32_t *)(sq + p.sq_off.array);
  cq_head = (uint32_t *)(cq + p.cq_off.head); cq_tail = (uint32_t *)(cq + p.cq_off.tail);
  cq_mask = (uint32_t *)(cq + p.cq_off.ring_mask); cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

  ctl_fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
  if (ctl_fd < 0) { perror("/dev/ublk-control"); return 1; }

  struct dev_info info = { .nr_hw_queues = 1, .queue_depth = 32, .max_io_buf_bytes = 512 << 10,
                           .dev_id = 0xFFFFFFFFu, .ublksrv_pid = getpid() };
  struct ctrl_cmd c = { .dev_id = 0xFFFFFFFFu, .queue_id = 0xFFFF, .len = sizeof info, .addr = (uintptr_t)&info };
  int r = ctrl(UBLK_ADD_DEV, &c);
  if (r < 0) { fprintf(stderr, "ADD_DEV: %s\n", strerror(-r)); return 1; }
  printf("ADD_DEV ok: dev_id %u, queues %u, depth %u, state %u\n", info.dev_id, info.nr_hw_queues, info.queue_depth, info.state);

  char path[64]; struct stat st; int ok = 0;
  snprintf(path, sizeof path, "/dev/ublkc%u", info.dev_id);
  for (int i = 0; i < 50 && !(ok = stat(path, &st) == 0 && S_ISCHR(st.st_mode)); i++) usleep(100000);
  printf("%s %s\n", path, ok ? "appeared (char device)" : "MISSING");

  struct dev_info got; memset(&got, 0, sizeof got);
  struct ctrl_cmd g = { .dev_id = info.dev_id, .queue_id = 0xFFFF, .len = sizeof got, .addr = (uintptr_t)&got };
  r = ctrl(UBLK_GET_DEV_INFO, &g);
  if (r < 0) { fprintf(stderr, "GET_DEV_INFO: %s\n", strerror(-r)); ok = 0; }
  else printf("GET_DEV_INFO ok: dev_id %u, state %u, flags 0x%llx\n", got.dev_id, got.state, (unsigned long long)got.flags);

  struct ctrl_cmd d = { .dev_id = info.dev_id, .queue_id = 0xFFFF };
  r = ctrl(UBLK_DEL_DEV, &d);
  if (r < 0) { fprintf(stderr, "DEL_DEV: %s\n", strerror(-r)); return 1; }
  printf("DEL_DEV ok; %s now %s\n", path, stat(path, &st) == 0 ? "still present" : "gone");
  return ok ? 0 : 1;
}
