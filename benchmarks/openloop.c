/*
 * openloop: HTTP GETs at a constant rate in an open loop, one connection per request, one thread.
 *
 * Why it exists: the serving benchmark shares two cores between Cassandra, gunicorn and the load generator.
 * vegeta (Go, net/http) holds a rate well but took 0.4 to 1.2 ms of CPU per request here, a sixth of the
 * machine at half the serve peak, taken from the server it measures. This does the same job with a dozen
 * system calls per request. Built by benchmarks/bench_serve.py with the system's C compiler.
 *
 *   openloop -a ADDR -p PORT -r RATE -d SECONDS -t TARGETS -o RESULTS [-s SOURCE_ADDR[,SOURCE_ADDR...]]
 *            [-T TIMEOUT_S] [-H HOST]
 *
 * TARGETS: one request target ("/path?query") per line, used in turn. Request i is due at start + i / RATE
 * whatever became of the earlier ones (open loop: a slow server does not slow the sender down), and its
 * latency is counted from that due time, not from when it was sent, so a late send (this program falling
 * behind) counts against the figure instead of hiding a stall ("coordinated omission").
 *
 * SOURCE_ADDR: the local addresses to connect from, used in turn (one per request). The server closes each
 * connection first and keeps a TIME_WAIT of 60 s per address pair: from one source address the ~28,000
 * ephemeral ports come round within 60 s above ~470 requests a second, and a SYN that lands on an old pair
 * waits for a retransmission (1 s, 3 s, ...). Several source addresses spread the pairs.
 *
 * RESULTS: a first line "# start_unix_ns <n> rate <r>", then one line per request, in completion order:
 *   due_offset_ns <TAB> latency_ns <TAB> send_lag_ns <TAB> status <TAB> error <TAB> body
 * status 0 means no HTTP response (error says why: connect, timeout, reset, ...); error is "-" otherwise;
 * body is the response body with tabs, CR and LF replaced by spaces.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (1 << 20)

struct conn {
    int active;
    int sent;
    int64_t due;      /* monotonic ns */
    int64_t launched; /* monotonic ns */
    const char *request;
    size_t request_len;
    char *buf;
    size_t len, cap;
};

static struct conn *conns;
static int max_fds;
static int top_fd; /* highest descriptor used so far */
static FILE *out;
static int64_t start_ns;

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* The status code, or 0 when the status line is not there (yet). */
static int status_of(const char *buf, size_t len) {
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return 0;
    return atoi(buf + 9);
}

/* Header end (offset of the body), or -1. */
static long body_offset(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    return end ? (long)(end - buf) + 4 : -1;
}

/* Content-Length, or -1 when absent. */
static long content_length(const char *buf, long header_len) {
    const char *p = buf;
    const char *limit = buf + header_len;
    while (p < limit) {
        const char *eol = memmem(p, (size_t)(limit - p), "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) return atol(p + 15);
        p = eol + 2;
    }
    return -1;
}

static void finish(int epfd, int fd, const char *error) {
    struct conn *c = &conns[fd];
    int64_t done = now_ns(CLOCK_MONOTONIC);
    int status = error ? 0 : status_of(c->buf, c->len);
    fprintf(out, "%lld\t%lld\t%lld\t%d\t%s\t", (long long)(c->due - start_ns), (long long)(done - c->due),
            (long long)(c->launched - c->due), status, error ? error : "-");
    long body = error ? -1 : body_offset(c->buf, c->len);
    if (body >= 0) {
        for (size_t i = (size_t)body; i < c->len; i++) {
            char ch = c->buf[i];
            fputc(ch == '\t' || ch == '\r' || ch == '\n' ? ' ' : ch, out);
        }
    }
    fputc('\n', out);
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    c->active = 0;
    c->len = 0;
}

static void launch(int epfd, const struct sockaddr_in *server, const struct sockaddr_in *source, int64_t due,
                   const char *request, size_t request_len, long *failed_launch) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || fd >= max_fds) {
        if (fd >= 0) close(fd);
        fprintf(out, "%lld\t%lld\t0\t0\tsocket: %s\t\n", (long long)(due - start_ns),
                (long long)(now_ns(CLOCK_MONOTONIC) - due), fd < 0 ? strerror(errno) : "too many open");
        (*failed_launch)++;
        return;
    }
    if (fd > top_fd) top_fd = fd;
    struct conn *c = &conns[fd];
    c->active = 1;
    c->sent = 0;
    c->due = due;
    c->launched = now_ns(CLOCK_MONOTONIC);
    c->request = request;
    c->request_len = request_len;
    c->len = 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source && bind(fd, (const struct sockaddr *)source, sizeof *source) < 0) {
        finish(epfd, fd, "bind");
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    if (connect(fd, (const struct sockaddr *)server, sizeof *server) < 0 && errno != EINPROGRESS) {
        finish(epfd, fd, errno == ECONNREFUSED ? "connect: refused" : "connect");
    }
}

static void on_writable(int epfd, int fd) {
    struct conn *c = &conns[fd];
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        finish(epfd, fd, err == ECONNREFUSED ? "connect: refused" : "connect");
        return;
    }
    ssize_t n = send(fd, c->request, c->request_len, MSG_NOSIGNAL);
    if (n != (ssize_t)c->request_len) { /* a few hundred bytes on a fresh connection: all or an error */
        finish(epfd, fd, "send");
        return;
    }
    c->sent = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void on_readable(int epfd, int fd) {
    struct conn *c = &conns[fd];
    for (;;) {
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 8192;
            if (cap > MAX_RESPONSE) {
                finish(epfd, fd, "response too large");
                return;
            }
            c->buf = realloc(c->buf, cap);
            if (!c->buf) die("realloc");
            c->cap = cap;
        }
        ssize_t n = recv(fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            long body = body_offset(c->buf, c->len);
            if (body >= 0) {
                long length = content_length(c->buf, body);
                if (length >= 0 && (long)c->len >= body + length) {
                    finish(epfd, fd, NULL);
                    return;
                }
            }
            continue;
        }
        if (n == 0) { /* closed by the server: complete if there was a response */
            finish(epfd, fd, status_of(c->buf, c->len) ? NULL : "closed without a response");
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        finish(epfd, fd, errno == ECONNRESET ? "reset" : "recv");
        return;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: openloop -a ADDR -p PORT -r RATE -d SECONDS -t TARGETS -o RESULTS "
                    "[-s SOURCE_ADDR[,SOURCE_ADDR...]] [-T TIMEOUT_S] [-H HOST]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1", *targets_path = NULL, *out_path = NULL, *source_addr = NULL, *host = NULL;
    int port = 0;
    double rate = 0, duration = 0, timeout_s = 10;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:r:d:t:o:s:T:H:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 't': targets_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 's': source_addr = optarg; break;
        case 'T': timeout_s = atof(optarg); break;
        case 'H': host = optarg; break;
        default: usage();
        }
    }
    if (!port || rate <= 0 || duration <= 0 || !targets_path || !out_path) usage();

    /* requests, built once */
    FILE *tf = fopen(targets_path, "r");
    if (!tf) die(targets_path);
    char **requests = NULL;
    size_t *lengths = NULL, n_requests = 0;
    char line[16384];
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s:%d", host ? host : addr, port);
    while (fgets(line, sizeof line, tf)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        requests = realloc(requests, (n_requests + 1) * sizeof *requests);
        lengths = realloc(lengths, (n_requests + 1) * sizeof *lengths);
        if (asprintf(&requests[n_requests], "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: openloop\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n", line, host_header) < 0) die("asprintf");
        lengths[n_requests] = strlen(requests[n_requests]);
        n_requests++;
    }
    fclose(tf);
    if (!n_requests) {
        fprintf(stderr, "openloop: no targets in %s\n", targets_path);
        return 2;
    }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    max_fds = rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
    conns = calloc((size_t)max_fds, sizeof *conns);
    if (!conns) die("calloc");

    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &server.sin_addr) != 1) usage();
    struct sockaddr_in sources[256];
    int n_sources = 0;
    if (source_addr) {
        char *list = strdup(source_addr), *save = NULL;
        for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            if (n_sources == 256) usage();
            sources[n_sources] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = 0};
            if (inet_pton(AF_INET, item, &sources[n_sources].sin_addr) != 1) usage();
            n_sources++;
        }
        free(list);
    }

    out = fopen(out_path, "w");
    if (!out) die(out_path);
    setvbuf(out, NULL, _IOFBF, 1 << 20);

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.fd = tfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    long total = (long)(rate * duration + 0.5), next = 0, failed_launch = 0;
    double interval_ns = 1e9 / rate;
    int64_t timeout_ns = (int64_t)(timeout_s * 1e9);
    start_ns = now_ns(CLOCK_MONOTONIC) + 10000000; /* first request 10 ms from now */
    fprintf(out, "# start_unix_ns %lld rate %g\n",
            (long long)(now_ns(CLOCK_REALTIME) + (start_ns - now_ns(CLOCK_MONOTONIC))), rate);
    int64_t last_sweep = start_ns;
    struct epoll_event events[512];
    for (;;) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        while (next < total && start_ns + (int64_t)(next * interval_ns) <= now) {
            size_t k = (size_t)next % n_requests;
            launch(epfd, &server, n_sources ? &sources[next % n_sources] : NULL, start_ns + (int64_t)(next * interval_ns),
                   requests[k], lengths[k], &failed_launch);
            next++;
        }
        if (now - last_sweep > 50000000) { /* time out what waited too long */
            last_sweep = now;
            for (int fd = 0; fd <= top_fd; fd++)
                if (conns[fd].active && now - conns[fd].due > timeout_ns) finish(epfd, fd, "timeout");
        }
        int inflight = 0;
        if (next >= total) {
            for (int fd = 0; fd <= top_fd && !inflight; fd++) inflight = conns[fd].active;
            if (!inflight) break;
        }
        int wait_ms = 50;
        if (next < total) {
            int64_t due = start_ns + (int64_t)(next * interval_ns);
            struct itimerspec its = {.it_value = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(epfd, events, 512, wait_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("timerfd");
                continue;
            }
            if (!conns[fd].active) continue;
            if (!conns[fd].sent) {
                if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(epfd, fd);
            } else {
                on_readable(epfd, fd);
            }
        }
    }
    if (fclose(out) != 0) die("write results");
    return failed_launch ? 1 : 0;
}
