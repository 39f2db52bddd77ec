// clockshift.c: moves a process' wall clock by an offset read from a file, so that tests can
// step Redis' clock the way NTP or a VM restored from a snapshot would.
//
//   cc -shared -fPIC -O2 -o clockshift.so scripts/clockshift.c
//   echo -100000 > /tmp/offset     # milliseconds, signed; read on every call
//   J4_CLOCK_OFFSET_FILE=/tmp/offset LD_PRELOAD=$PWD/clockshift.so redis-server ...
//
// Only the wall clock moves (clock_gettime of CLOCK_REALTIME, gettimeofday, time): Redis'
// TIME and its key expiry. Monotonic clocks are left alone. It calls the kernel directly and
// never allocates, so it is safe under jemalloc (Debian's redis-server), where libfaketime
// is not: jemalloc reads the clock while libfaketime is still initialising.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_ms(void) {
    const char *path = getenv("J4_CLOCK_OFFSET_FILE");
    if (!path) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtoll(buf, NULL, 10);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int r = (int)syscall(SYS_clock_gettime, id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + offset_ms() * 1000000LL;
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
