// Round trip of 64 bytes between two processes over a Unix socketpair: the floor of one hop.
// Blocking read/write, or (argument "epoll") each side waiting in epoll_wait first, as an event
// loop such as libuv does. Build and run: cc -O2 -o /tmp/pingpong bench/floor/pingpong.c &&
// /tmp/pingpong && /tmp/pingpong epoll. Results: bench/RESULTS.md, "What one hop costs".
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N 2000

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void wait_readable(int ep) {
  struct epoll_event ev;
  while (epoll_wait(ep, &ev, 1, -1) < 1) {}
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return perror("socketpair"), 1;
  int use_epoll = argc > 1;
  char buf[64] = {0};
  int side = fork() == 0 ? 1 : 0;
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[side], &ev);
  if (side == 1) {
    for (;;) {
      if (use_epoll) wait_readable(ep);
      if (read(sv[1], buf, sizeof buf) <= 0) _exit(0);
      if (write(sv[1], buf, sizeof buf) < 0) _exit(1);
    }
  }
  static double lat[N];
  for (int i = 0; i < N; i++) {
    double t = now_us();
    if (write(sv[0], buf, sizeof buf) < 0) return 1;
    if (use_epoll) wait_readable(ep);
    if (read(sv[0], buf, sizeof buf) <= 0) return 1;
    lat[i] = now_us() - t;
  }
  qsort(lat, N, sizeof lat[0], by_value);
  printf("%s round trip (us): p10 %.0f p50 %.0f p90 %.0f\n", use_epoll ? "epoll   " : "blocking", lat[N / 10], lat[N / 2], lat[N * 9 / 10]);
  return 0;
}
