/*
 * relay.c: the trivial C broadcast relay of `python -m benchmarks`.
 *
 * The reference "limit" a chat server on this machine can reach: one thread,
 * epoll, every complete line a client sends goes unchanged to every other
 * client (a partial line waits for its end, so lines of different senders
 * never interleave).  What a batch of events produces for a client is
 * written with one write() after the batch, as event-loop servers do.  Each client first gets one line, `relay: hello`.  A
 * client whose unsent output passes 16 MiB is dropped.  No names, no limits,
 * no logging, no parsing beyond finding line ends.
 *
 * Usage: relay [--port P] [--backlog N] [--limit SECONDS]
 * Prints `relay listening on 127.0.0.1:PORT` once listening; ends on SIGTERM
 * or after --limit seconds.
 *
 * Build: gcc -O2 -o relay relay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CAP (256 * 1024)
#define PART_CAP 8192
#define OUT_CAP (16u << 20)
#define MAX_EVENTS 1024

typedef struct {
    int alive, pos; /* pos: index in the members array */
    int want_out, dirty;
    char *out;
    size_t olen, ocap;
    char *part;
    size_t plen;
} client_t;

static client_t *clients; /* indexed by fd */
static int *members, nmembers, epfd, lfd, accepting = 1, paused_at;
static size_t maxfd;
static char *buf;
static int *doomed, ndoomed, *dirty, ndirty;

static void on_alarm(int sig) {
    (void)sig;
    _exit(0);
}

static void arm(int fd, int out) {
    client_t *c = &clients[fd];
    if (c->want_out == out)
        return;
    c->want_out = out;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void doom(int fd) {
    if (clients[fd].alive == 1) {
        clients[fd].alive = 2; /* closed after the current broadcast */
        doomed[ndoomed++] = fd;
    }
}

static void reap(void) {
    for (int k = 0; k < ndoomed; k++) {
        int fd = doomed[k];
        client_t *c = &clients[fd];
        int last = members[--nmembers];
        members[c->pos] = last;
        clients[last].pos = c->pos;
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        free(c->out);
        free(c->part);
        memset(c, 0, sizeof *c);
    }
    ndoomed = 0;
}

/* Queue data for a client; it is written when the current batch of events is done. */
static void send_to(int fd, const char *data, size_t len) {
    client_t *c = &clients[fd];
    if (c->alive != 1)
        return;
    if (c->olen + len > OUT_CAP) {
        doom(fd);
        return;
    }
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 1024;
        while (cap < c->olen + len)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (!grown) {
            doom(fd);
            return;
        }
        c->out = grown;
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, data, len);
    c->olen += len;
    if (!c->dirty) {
        c->dirty = 1;
        dirty[ndirty++] = fd;
    }
}

static void flush_out(int fd) {
    client_t *c = &clients[fd];
    if (c->alive != 1 || !c->olen)
        return;
    ssize_t w = write(fd, c->out, c->olen);
    if (w < 0) {
        if (errno != EAGAIN)
            doom(fd);
        return;
    }
    memmove(c->out, c->out + w, c->olen - (size_t)w);
    c->olen -= (size_t)w;
    if (!c->olen) { /* an idle client holds no buffer */
        free(c->out);
        c->out = NULL;
        c->ocap = 0;
    }
    arm(fd, c->olen > 0);
}

/* After each batch of events: one write per client that was sent something. */
static void flush_dirty(void) {
    for (int k = 0; k < ndirty; k++) {
        int fd = dirty[k];
        clients[fd].dirty = 0;
        if (!clients[fd].want_out) /* else EPOLLOUT will say when it can take more */
            flush_out(fd);
    }
    ndirty = 0;
}

static void broadcast(int from, const char *data, size_t len) {
    for (int k = 0; k < nmembers; k++)
        if (members[k] != from)
            send_to(members[k], data, len);
}

static void on_readable(int fd) {
    client_t *c = &clients[fd];
    size_t keep = c->plen;
    if (keep)
        memcpy(buf, c->part, keep);
    ssize_t n = read(fd, buf + keep, READ_CAP);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        doom(fd);
        return;
    }
    size_t total = keep + (size_t)n, upto = total;
    while (upto && buf[upto - 1] != '\n')
        upto--;
    if (!upto && total > PART_CAP)
        upto = total; /* an endless line: pass it on as it is */
    if (upto)
        broadcast(fd, buf, upto);
    c->plen = total - upto;
    if (c->plen) {
        if (!c->part && !(c->part = malloc(PART_CAP + READ_CAP)))
            exit(1);
        memmove(c->part, buf + upto, c->plen);
    }
}

static void on_accept(void) {
    for (int k = 0; k < 256; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: stop accepting until a client leaves. */
                epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
                accepting = 0;
                paused_at = nmembers;
            }
            return;
        }
        if ((size_t)fd >= maxfd) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client_t *c = &clients[fd];
        memset(c, 0, sizeof *c);
        c->alive = 1;
        c->pos = nmembers;
        members[nmembers++] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        send_to(fd, "relay: hello\n", 13);
    }
}

int main(int argc, char **argv) {
    int port = 0, backlog = 511;
    double limit = 3600;
    for (int k = 1; k + 1 < argc; k += 2) {
        if (!strcmp(argv[k], "--port"))
            port = atoi(argv[k + 1]);
        else if (!strcmp(argv[k], "--backlog"))
            backlog = atoi(argv[k + 1]);
        else if (!strcmp(argv[k], "--limit"))
            limit = atof(argv[k + 1]);
        else {
            fprintf(stderr, "usage: relay [--port P] [--backlog N] [--limit SECONDS]\n");
            return 64;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)limit);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    maxfd = rl.rlim_cur > 1048576 ? 1048576 : rl.rlim_cur;
    clients = calloc(maxfd, sizeof *clients);
    members = calloc(maxfd, sizeof *members);
    doomed = calloc(maxfd, sizeof *doomed);
    dirty = calloc(maxfd, sizeof *dirty);
    buf = malloc(READ_CAP + PART_CAP + READ_CAP);
    if (!clients || !members || !doomed || !dirty || !buf)
        return 1;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, backlog) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("relay: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    printf("relay listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    static struct epoll_event evs[MAX_EVENTS];
    while (1) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, accepting ? -1 : 100);
        if (n < 0 && errno != EINTR)
            return 1;
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == lfd) {
                on_accept();
                continue;
            }
            if (clients[fd].alive != 1)
                continue;
            if (evs[k].events & EPOLLOUT)
                flush_out(fd);
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(fd);
        }
        flush_dirty();
        reap();
        if (!accepting && nmembers < paused_at) {
            epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
            accepting = 1;
        }
    }
}
