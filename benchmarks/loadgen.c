/*
 * loadgen.c: the epoll load generator of `python -m benchmarks`.
 *
 * One thread, one epoll set, N non-blocking TCP clients of one chat server.
 * It knows nothing of the server's wire format: a client is "ready" once
 * the server has sent it any byte (a greeting, an announcement), and a
 * relayed message is recognised by the stamp at the end of its line,
 *
 *     xxxxxxxxxxxxxxxx|SSSS:QQQQQQQQ:TTTTTTTTTTTTTTTT\n
 *
 * (sender, sequence number and CLOCK_MONOTONIC send time in nanoseconds, in
 * fixed-width lowercase hex: cheap to parse from the end of the line)
 * whatever the server puts before it (`<guest5> `, `<user5> `, nothing) and
 * whether it ends the line with \n or \r\n.  Every other line is counted and
 * ignored.
 *
 * Phases: connect (paced, or unpaced with a bounded number pending), settle
 * (until the server has been quiet for a moment: announcements), run (send
 * for --duration seconds: at a fixed total rate, or as fast as a bounded
 * in-flight window per sender allows), drain (until every message reached
 * every receiver, or nothing arrives any more), report.  Idle mode holds the
 * clients for --duration seconds instead of sending.  Every phase has a
 * deadline, and alarm(--limit) ends the process whatever happens.
 *
 * Rooms (--rooms R, R > 0): client i, once ready, sends `/join r<K>` with
 * K = i mod R, and a sender's lines are expected at the other members of
 * its room only; a stamped line that reaches a client of another room is
 * counted as misrouted, not delivered.  --rooms 0 (the default): everyone
 * in the one room the server puts them in, nothing sent before the run.
 *
 * Several nodes of one chat (--ports P1,P2,...): client i connects to the
 * i mod Nth port; one chat still, so the counting is the same.
 * --batch K (rate mode): each send is K lines of one sender in one write(),
 * the total rate in lines unchanged.
 *
 * WebSocket clients (--ws-port W): client i >= --tcp-clients K connects to W
 * instead, asks for an upgrade (GET --ws-path, RFC 6455, no Origin), and
 * once the server's 101 answer is read, reads its frames: a text, binary or
 * continuation frame is scanned for stamps anywhere in it as it comes, of
 * any size (`...|SSSS:QQQ...` followed by `"` in a JSON event: a message of
 * several lines has several stamps; a frame without one is counted in
 * other_lines), a ping is answered by a pong, a close by a close.  Such a
 * client is ready at its first frame (the greeting); what it sends
 * (`/join`, a sender's lines) goes as masked text frames, one per line,
 * without the line end.  The first K clients stay plain TCP (--port,
 * --ports): nc-style senders next to WebSocket receivers.  A stamp split
 * over two fragments of one message (autobahn does not fragment by
 * default) is not found.
 * --send-only: the senders are not receivers; what reaches them is stray.
 *
 * Output on stdout, one record per line, words `key=value`:
 *   phase connected ... / phase start / phase end / phase done   (as they happen)
 *   sender sid=... sent=... expected=... received=... lost=... reordered=...
 *   result key=value ...                           (last)
 *
 * Build: gcc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PARTIAL_CAP 512       /* longest line kept across reads; longer ones are skipped */
#define WS_PARTIAL_CAP 4096   /* WebSocket: longest 101 answer; what else is kept is short */
#define WS_HEAD_CAP 14        /* WebSocket: a client frame's header, mask key included */
#define READ_CAP (256 * 1024) /* bytes per read() */
#define OUT_CAP (1 << 20)     /* a sender's unsent bytes past which rate mode skips a message */
#define MAX_EVENTS 1024
#define HIST_SUB 128 /* latency histogram: 128 buckets per power of two (< 1% error) */
#define HIST_BUCKETS (64 * HIST_SUB)
#define TIMER_TAG UINT32_MAX
#define MAX_PORTS 64

enum mode { IDLE, FLOOD, RATE };
enum state { FREE, CONNECTING, CONNECTED, READY, CLOSED, FAILED };
enum { SEEN_BAR = 1, SEEN_STAMP = 2 };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t rx;       /* a receiver: ready when the run started */
    uint8_t skipping; /* inside an over-long line */
    uint16_t plen;
    uint8_t ws;       /* a WebSocket client (--ws-port) */
    uint8_t upgraded; /* WebSocket: the server's 101 answer is read */
    uint8_t in_data;  /* WebSocket: inside a data frame's payload */
    uint8_t fseen;    /* WebSocket: SEEN_* in the current data frame */
    char *partial;
    uint64_t fleft;   /* WebSocket: payload bytes of the current data frame still to come */
    int sid;          /* sender index, or -1 */
} conn_t;

typedef struct {
    uint32_t conn;
    uint64_t seq;  /* messages sent (queued) so far = the next sequence number */
    uint64_t base; /* flood: the oldest message not yet at every receiver */
    double base_at;
    uint32_t *ring; /* flood: deliveries per in-flight message, slot seq & ring_mask */
    char *out;
    size_t olen;
    int want_out; /* EPOLLOUT is armed */
    uint64_t skipped, stalls, reordered;
} sender_t;

static struct {
    const char *host;
    int port, clients, senders, window, size;
    enum mode mode;
    double rate, duration, connect_rate, connect_timeout, settle, drain, limit;
    int connect_window, per_sender, rooms, batch;
    int ws_port, tcp_clients, send_only;
    const char *ws_path;
} opt = {"127.0.0.1", 0, 10, 1, 128, 64, FLOOD, 1000, 2, 0, 5, 0.2, 5, 600, 256, 0, 0, 1,
         0, 0, 0, "/ws"};

static int ports[MAX_PORTS], nports; /* --ports: client i connects to ports[i mod nports] */

static conn_t *conns;
static sender_t *senders;
static uint32_t *counts, *nexts; /* per (receiver, sender): deliveries, next expected seq */
static int *room_rx;             /* per room (one without --rooms): receivers still connected */
static uint64_t hist[HIST_BUCKETS];
static uint64_t lat_max, lat_n;
static int epfd, nsenders;
static uint64_t ring_mask; /* flood: ring slots - 1, a power of two >= the window */
static int opened, ready, failed, closed_early, dropped, alive_rx, fd_limit_hit;
static uint64_t delivered, in_window, garbled, stray, misrouted, other_lines, overlong, bytes_in;
static uint64_t ws_pings, ws_refused, ws_bad; /* WebSocket: pings answered, no 101, bad frames */
static int ws_opened, ws_closed;             /* WebSocket clients, closes from the server */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double t_run, t_stop, last_byte;
static int running; /* 1 from the run's start until its end */
static char *readbuf;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int bucket_of(uint64_t v) {
    if (v < HIST_SUB)
        return (int)v;
    int shift = 63 - __builtin_clzll(v) - 7;
    return (shift + 1) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

static uint64_t bucket_value(int b) {
    if (b < HIST_SUB)
        return (uint64_t)b;
    int shift = b / HIST_SUB - 1;
    uint64_t low = (uint64_t)(b % HIST_SUB + HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1); /* the middle of the bucket */
}

static double percentile_us(double p) {
    if (!lat_n)
        return -1;
    uint64_t rank = (uint64_t)(p * (double)lat_n);
    if (rank >= lat_n)
        rank = lat_n - 1;
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen > rank) {
            uint64_t v = bucket_value(b);
            return (v > lat_max ? lat_max : v) / 1000.0;
        }
    }
    return lat_max / 1000.0;
}

static void die(const char *what) {
    printf("result error=%s errno=%d\n", what, errno);
    fflush(stdout);
    exit(2);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "result error=time-limit\n";
    ssize_t w = write(1, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

/* ---- rooms ---- */

/* Client i's room: i mod --rooms (0 without rooms). */
static inline int room_of(uint32_t i) { return opt.rooms ? (int)(i % (uint32_t)opt.rooms) : 0; }

/* The members of client i's room are first_member(i), + member_step(), ... */
static inline int first_member(uint32_t i) { return room_of(i); }
static inline int member_step(void) { return opt.rooms ? opt.rooms : 1; }

/* ---- connections ---- */

static void conn_close(uint32_t i, int early) {
    conn_t *c = &conns[i];
    if (c->fd < 0)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->state == READY && early) {
        closed_early++;
        if (c->rx) {
            dropped++;
            alive_rx--;
            room_rx[room_of(i)]--;
        }
    } else if (c->state != READY) {
        failed++;
    }
    c->state = (c->state == READY) ? CLOSED : FAILED;
}

static int open_one(const struct sockaddr_in *addrs, const struct sockaddr_in *ws_addr) {
    int i = opened;
    conn_t *c = &conns[i];
    c->ws = opt.ws_port && i >= opt.tcp_clients;
    const struct sockaddr_in *addr = c->ws ? ws_addr : &addrs[i % nports];
    c->sid = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            fd_limit_hit = 1;
            return -1;
        }
        die("socket");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    opened++;
    ws_opened += c->ws;
    c->fd = fd;
    c->state = CONNECTING;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        c->state = CONNECTED; /* so that conn_close counts it as failed */
        conn_close(i, 0);
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
}

/* ---- WebSocket (client side of RFC 6455) ---- */

static uint64_t next_random(void) { /* xorshift64: mask keys and handshake keys */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One masked client frame (FIN set) of `len` payload bytes into out; its size. */
static size_t ws_frame(char *out, int opcode, const char *payload, size_t len) {
    unsigned char *o = (unsigned char *)out;
    size_t h = 0;
    o[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        o[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        o[h++] = 0x80 | 126;
        o[h++] = (unsigned char)(len >> 8);
        o[h++] = (unsigned char)len;
    } else {
        o[h++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--)
            o[h++] = (unsigned char)((uint64_t)len >> (8 * k));
    }
    uint32_t key = (uint32_t)next_random();
    memcpy(o + h, &key, 4);
    const unsigned char *m = o + h;
    h += 4;
    for (size_t k = 0; k < len; k++)
        o[h + k] = (unsigned char)payload[k] ^ m[k & 3];
    return h + len;
}

/*
 * Send a frame on WebSocket client i: through a sender's queue (after its
 * lines), else with one write, which a client that is not sending takes
 * whole.  -1 if the connection is closed.
 */
static void flush_sender(sender_t *s);
static int ws_send(uint32_t i, int opcode, const char *payload, size_t len) {
    conn_t *c = &conns[i];
    char frame[WS_HEAD_CAP + 125];
    if (len > 125)
        len = 125; /* (control frames and /join: short) */
    size_t n = ws_frame(frame, opcode, payload, len);
    if (c->sid >= 0) {
        sender_t *s = &senders[c->sid];
        if (s->olen + n <= OUT_CAP) {
            memcpy(s->out + s->olen, frame, n);
            s->olen += n;
        }
        flush_sender(s);
        return c->fd >= 0 ? 0 : -1;
    }
    if (write(c->fd, frame, n) != (ssize_t)n) {
        conn_close(i, 1);
        return -1;
    }
    return 0;
}

/* The upgrade request, once connected.  -1 if it could not be sent. */
static int ws_handshake(uint32_t i) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char nonce[18] = {0}; /* 16 random bytes (+2 zero: base64 in groups of 3) */
    uint64_t r0 = next_random(), r1 = next_random();
    memcpy(nonce, &r0, 8);
    memcpy(nonce + 8, &r1, 8);
    char key[25];
    for (int g = 0; g < 6; g++) {
        uint32_t v = (uint32_t)nonce[3 * g] << 16 | (uint32_t)nonce[3 * g + 1] << 8 | nonce[3 * g + 2];
        for (int k = 0; k < 4; k++)
            key[4 * g + k] = b64[(v >> (18 - 6 * k)) & 63];
    }
    key[22] = key[23] = '=';
    key[24] = 0;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.ws_path, opt.host, opt.ws_port, key);
    if (n <= 0 || n >= (int)sizeof req || write(conns[i].fd, req, (size_t)n) != n) {
        conn_close(i, 0);
        return -1;
    }
    return 0;
}

/* ---- sending ---- */

static size_t format_line(char *p, uint32_t sid, uint64_t seq, uint64_t ns) {
    char stamp[64];
    int n = snprintf(stamp, sizeof stamp, "|%04x:%08llx:%016llx\n", sid,
                     (unsigned long long)seq, (unsigned long long)ns);
    int pad = opt.size - n;
    if (pad < 1)
        pad = 1;
    memset(p, 'x', (size_t)pad);
    memcpy(p + pad, stamp, (size_t)n);
    return (size_t)(pad + n);
}

static size_t line_room(void) { return (size_t)(opt.size > 64 ? opt.size : 64) + 64; }

static void flush_sender(sender_t *s) {
    conn_t *c = &conns[s->conn];
    if (!s->olen || c->fd < 0)
        return;
    ssize_t w = write(c->fd, s->out, s->olen);
    if (w < 0) {
        if (errno != EAGAIN)
            conn_close(s->conn, 1);
        w = 0;
    }
    if ((size_t)w < s->olen)
        memmove(s->out, s->out + w, s->olen - (size_t)w);
    s->olen -= (size_t)w;
    if (c->fd >= 0 && s->want_out != (s->olen > 0)) {
        s->want_out = s->olen > 0;
        struct epoll_event ev = {.events = EPOLLIN | (s->olen ? EPOLLOUT : 0u),
                                 .data.u32 = s->conn};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Queue n lines on sender s (n >= 1), then try to write them. */
static void send_lines(sender_t *s, uint32_t sid, uint64_t n) {
    if (conns[s->conn].fd < 0)
        return;
    uint64_t ns = now_ns();
    if (conns[s->conn].ws) {
        /* One text frame per line, without its line end. */
        char line[4096 + 64];
        for (uint64_t k = 0; k < n; k++) {
            if (s->olen + line_room() + WS_HEAD_CAP > OUT_CAP) {
                s->skipped += n - k;
                break;
            }
            size_t len = format_line(line, sid, s->seq++, ns) - 1;
            s->olen += ws_frame(s->out + s->olen, 0x1, line, len);
        }
        flush_sender(s);
        return;
    }
    for (uint64_t k = 0; k < n; k++) {
        if (s->olen + line_room() > OUT_CAP) {
            s->skipped += n - k;
            break;
        }
        s->olen += format_line(s->out + s->olen, sid, s->seq++, ns);
    }
    flush_sender(s);
}

/* How many receivers a sender's line should reach: the others of its room. */
static uint64_t target_of(uint32_t sid) {
    uint32_t i = senders[sid].conn;
    conn_t *c = &conns[i];
    return (uint64_t)(room_rx[room_of(i)] - ((c->rx && c->fd >= 0) ? 1 : 0));
}

/* Flood: move the window past messages that every receiver has. */
static void advance(uint32_t sid, double t) {
    sender_t *s = &senders[sid];
    uint64_t target = target_of(sid);
    while (s->base < s->seq && s->ring[s->base & ring_mask] >= target) {
        s->ring[s->base & ring_mask] = 0;
        s->base++;
        s->base_at = t;
    }
}

static void flood_send(double t) {
    for (int sid = 0; sid < nsenders; sid++) {
        sender_t *s = &senders[sid];
        advance((uint32_t)sid, t);
        if (s->base < s->seq && t - s->base_at > 0.5) {
            /* Nothing delivered for 0.5 s: give up on the oldest (it is lost). */
            s->ring[s->base & ring_mask] = 0;
            s->base++;
            s->base_at = t;
            s->stalls++;
        }
        uint64_t room = s->base + (uint64_t)opt.window - s->seq;
        if (room > 0 && s->olen == 0) {
            if (s->base == s->seq)
                s->base_at = t;
            send_lines(s, (uint32_t)sid, room);
        }
    }
}

/* Rooms: a client that is ready asks to join its room.  -1 if it is closed. */
static int join_room(uint32_t i) {
    char line[32];
    int n = snprintf(line, sizeof line, "/join r%d\n", room_of(i));
    if (conns[i].ws)
        return ws_send(i, 0x1, line, (size_t)n - 1);
    if (write(conns[i].fd, line, (size_t)n) != n) {
        /* (A fresh socket takes a few bytes whole; anything else is an error.) */
        conn_close(i, 1);
        return -1;
    }
    return 0;
}

/* ---- receiving ---- */

/*
 * Eight lowercase hex digits to their value, eight bytes at a time (SWAR).
 * Sets bits of *bad when a byte is not a digit or a-f: its high nibble is
 * then neither 3 nor 6, or its low nibble is out of range.
 */
static inline uint32_t hex8(const char *p, uint64_t *bad) {
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t high = (x >> 4) & 0x0f0f0f0f0f0f0f0full;
    uint64_t low = x & 0x0f0f0f0f0f0f0f0full;
    uint64_t letter = (x >> 6) & ones; /* 1 for a-f, 0 for 0-9 */
    uint64_t lmask = letter * 0x80;     /* 0x80 in each letter's byte */
    /* high must be 3 (digit) or 6 (letter); low 0..9 (digit) or 1..6 (letter) */
    uint64_t over9 = (low + 0x76 * ones) & ~lmask;
    uint64_t over6 = (low + 0x79 * ones) & lmask;
    uint64_t zero = ~(low + 0x7f * ones) & lmask;
    *bad |= (high ^ (0x03 * ones + letter * 3)) | ((over9 | over6 | zero) & (0x80 * ones));
    uint64_t nib = low + letter * 9;
    /* bytes n0 n1 ... n7 (n0 first, the most significant) to one 32-bit value */
    uint64_t t = ((nib & 0x000f000f000f000full) << 4) | ((nib >> 8) & 0x000f000f000f000full);
    t = ((t & 0x000000ff000000ffull) << 8) | ((t >> 16) & 0x000000ff000000ffull);
    return (uint32_t)(((t & 0xffff) << 16) | ((t >> 32) & 0xffff));
}

#define STAMP_LEN 31 /* |ssss:qqqqqqqq:tttttttttttttttt */

/* Parse the fixed-width stamp `|SID:SEQ:NS` (hex) at p (STAMP_LEN bytes). 1 if it is one. */
static int parse_stamp_at(const char *p, uint64_t *sid, uint64_t *seq, uint64_t *ns) {
    if (p[0] != '|' || p[5] != ':' || p[14] != ':')
        return 0;
    uint64_t bad = 0;
    /* the sender's 4 digits are read with the 4 bytes before them: "|ssss" is not hex */
    char four[8] = {'0', '0', '0', '0', p[1], p[2], p[3], p[4]};
    *sid = hex8(four, &bad);
    *seq = hex8(p + 6, &bad);
    *ns = (uint64_t)hex8(p + 15, &bad) << 32 | hex8(p + 23, &bad);
    return bad == 0;
}

/* Parse the stamp at the end of a line.  1 if found. */
static int parse_stamp(const char *line, size_t len, uint64_t *sid, uint64_t *seq, uint64_t *ns) {
    if (len < STAMP_LEN)
        return 0;
    return parse_stamp_at(line + len - STAMP_LEN, sid, seq, ns);
}

/* A stamped message (sender, sequence number, send time) reached client r. */
static void on_stamp(uint32_t r, uint64_t sid, uint64_t seq, uint64_t ns, uint64_t t_ns,
                     double t) {
    if (!conns[r].rx || !nsenders) {
        stray++;
        return;
    }
    if (sid >= (uint64_t)nsenders || seq >= senders[sid].seq || ns > t_ns) {
        garbled++;
        return;
    }
    if (room_of(r) != room_of(senders[sid].conn)) {
        misrouted++;
        return;
    }
    uint64_t lat = t_ns - ns;
    hist[bucket_of(lat)]++;
    lat_n++;
    if (lat > lat_max)
        lat_max = lat;
    delivered++;
    if (running)
        in_window++;
    size_t k = (size_t)r * (size_t)nsenders + sid;
    counts[k]++;
    if (seq == nexts[k])
        nexts[k]++;
    else if (seq > nexts[k])
        nexts[k] = (uint32_t)seq + 1;
    else
        senders[sid].reordered++;
    if (opt.mode == FLOOD) {
        sender_t *s = &senders[sid];
        if (seq >= s->base && seq < s->base + (uint64_t)opt.window) {
            s->ring[seq & ring_mask]++;
            if (seq == s->base)
                advance((uint32_t)sid, t);
        }
    }
}

static void on_line(uint32_t r, const char *line, size_t len, uint64_t t_ns, double t) {
    if (len && line[len - 1] == '\r')
        len--;
    uint64_t sid, seq, ns;
    if (!parse_stamp(line, len, &sid, &seq, &ns)) {
        if (memchr(line, '|', len) && running)
            garbled++;
        else
            other_lines++;
        return;
    }
    on_stamp(r, sid, seq, ns, t_ns, t);
}

/* Client i's first frame: it is ready (and asks to join its room).  -1 if it is closed. */
static int ws_ready(uint32_t i) {
    conn_t *c = &conns[i];
    if (c->state >= READY)
        return 0;
    c->state = READY;
    ready++;
    return opt.rooms ? join_room(i) : 0;
}

/*
 * Scan len bytes of a data frame's payload for stamps, wherever they are.
 * Unless the frame ends here (done), a `|` too near the end to hold a whole
 * stamp may start one: scanning stops there, and that is returned (the
 * caller keeps the bytes from there on); else the end.
 */
static const char *ws_scan(uint32_t r, const char *p, size_t len, int done, uint64_t t_ns,
                           double t) {
    conn_t *c = &conns[r];
    const char *end = p + len, *bar;
    uint64_t sid, seq, ns;
    while (p < end && (bar = memchr(p, '|', (size_t)(end - p)))) {
        c->fseen |= SEEN_BAR;
        if (end - bar < STAMP_LEN) {
            if (!done)
                return bar;
            break;
        }
        if (parse_stamp_at(bar, &sid, &seq, &ns)) {
            on_stamp(r, sid, seq, ns, t_ns, t);
            c->fseen |= SEEN_STAMP;
            p = bar + STAMP_LEN;
        } else {
            p = bar + 1;
        }
    }
    return end;
}

/* A data frame ended: one without a stamp is counted (garbled, if it had a `|`). */
static void ws_frame_end(uint32_t r) {
    conn_t *c = &conns[r];
    if (!(c->fseen & SEEN_STAMP)) {
        if ((c->fseen & SEEN_BAR) && running)
            garbled++;
        else
            other_lines++;
    }
    c->in_data = 0;
}

/* A whole control frame: a ping is answered, a close answered and the connection closed. */
static void ws_control(uint32_t i, int opcode, const char *payload, size_t len) {
    switch (opcode) {
    case 0x8: /* close: answer with its status code, then close */
        ws_closed++;
        ws_send(i, 0x8, payload, len < 2 ? 0 : 2);
        conn_close(i, 1);
        break;
    case 0x9: /* ping */
        ws_pings++;
        ws_send(i, 0xA, payload, len);
        break;
    case 0xA: /* pong */
        break;
    default: /* reserved: fail the connection (RFC 6455, 5.2) */
        ws_bad++;
        conn_close(i, 1);
        break;
    }
}

/*
 * Read what client i has into readbuf, after the bytes kept from its last
 * read (*keep of them): the count read, or -1 when there was nothing (the
 * client closed, or an error: then it is closed too).
 */
static ssize_t read_after_kept(uint32_t i, size_t *keep) {
    conn_t *c = &conns[i];
    *keep = c->plen;
    if (*keep)
        memcpy(readbuf, c->partial, *keep);
    ssize_t n = read(c->fd, readbuf + *keep, READ_CAP);
    if (n <= 0) {
        if (!(n < 0 && (errno == EAGAIN || errno == EINTR)))
            conn_close(i, 1);
        return -1;
    }
    bytes_in += (uint64_t)n;
    return n;
}

/*
 * WebSocket client i is readable: the 101 answer, then frames.  A data
 * frame's payload is scanned as it comes, whatever its size: only a
 * stamp's first bytes (under STAMP_LEN), an unfinished header or control
 * frame, or an unfinished 101 answer are kept across reads.
 */
static void ws_readable(uint32_t i, double t) {
    conn_t *c = &conns[i];
    char *buf = readbuf;
    size_t keep;
    ssize_t n = read_after_kept(i, &keep);
    if (n < 0)
        return;
    last_byte = t;
    uint64_t t_ns = now_ns();
    char *p = buf, *end = buf + keep + n, *kept = NULL;
    size_t carry = c->in_data ? keep : 0; /* payload bytes kept, already off fleft */
    if (!c->upgraded) {
        char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!head_end) {
            if (end - p > WS_PARTIAL_CAP) {
                ws_refused++;
                conn_close(i, 0);
                return;
            }
            kept = p;
        } else if (end - p < 12 || memcmp(p, "HTTP/1.1 101", 12)) {
            ws_refused++;
            conn_close(i, 0);
            return;
        } else {
            c->upgraded = 1;
            p = head_end + 4;
        }
    }
    while (!kept && c->fd >= 0 && p < end) {
        if (c->in_data) {
            size_t fresh = (size_t)(end - p) - carry;
            size_t take = c->fleft < fresh ? (size_t)c->fleft : fresh;
            c->fleft -= take;
            size_t len = carry + take;
            carry = 0;
            const char *stop = ws_scan(i, p, len, c->fleft == 0, t_ns, t);
            if (c->fleft == 0) {
                ws_frame_end(i);
                p += len;
                continue;
            }
            kept = (char *)stop; /* (p + len == end: the frame goes on in a later read) */
            break;
        }
        const unsigned char *h = (const unsigned char *)p;
        size_t avail = (size_t)(end - p), head = 2;
        if (avail < 2) {
            kept = p;
            break;
        }
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            head = 4;
            if (avail < head) {
                kept = p;
                break;
            }
            len = (uint64_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            head = 10;
            if (avail < head) {
                kept = p;
                break;
            }
            len = 0;
            for (int k = 2; k < 10; k++)
                len = len << 8 | h[k];
        }
        int opcode = h[0] & 0x0f;
        if ((h[1] & 0x80) || (opcode >= 0x8 && len > 125) || (opcode > 0x2 && opcode < 0x8)) {
            /* a masked frame (a server never masks), a long control frame, a reserved opcode */
            ws_bad++;
            conn_close(i, 1);
            return;
        }
        if (ws_ready(i) < 0)
            return;
        if (opcode >= 0x8) {
            if (avail < head + len) {
                kept = p;
                break;
            }
            ws_control(i, opcode, p + head, (size_t)len);
            p += head + len;
            continue;
        }
        c->in_data = 1;
        c->fleft = len;
        c->fseen = 0;
        p += head;
        if (len == 0)
            ws_frame_end(i);
    }
    if (c->fd < 0)
        return;
    size_t rest = kept ? (size_t)(end - kept) : 0;
    if (rest && !c->partial && !(c->partial = malloc(WS_PARTIAL_CAP)))
        die("malloc");
    if (rest)
        memmove(c->partial, kept, rest);
    c->plen = (uint16_t)rest;
}

static void on_readable(uint32_t i, double t) {
    conn_t *c = &conns[i];
    char *buf = readbuf;
    size_t keep;
    ssize_t n = read_after_kept(i, &keep);
    if (n < 0)
        return;
    last_byte = t;
    if (c->state < READY) {
        c->state = READY;
        ready++;
        if (opt.rooms && join_room(i) < 0)
            return;
    }
    uint64_t t_ns = now_ns();
    char *p = buf, *end = buf + keep + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        if (c->skipping)
            c->skipping = 0;
        else
            on_line(i, p, (size_t)(nl - p), t_ns, t);
        p = nl + 1;
    }
    size_t rest = (size_t)(end - p);
    if (c->skipping || rest > PARTIAL_CAP) {
        if (!c->skipping)
            overlong++;
        c->skipping = 1;
        rest = 0;
    }
    if (rest && !c->partial && !(c->partial = malloc(PARTIAL_CAP)))
        die("malloc");
    if (rest)
        memmove(c->partial, p, rest);
    c->plen = (uint16_t)rest;
}

static void on_event(struct epoll_event *ev, double t) {
    uint32_t i = ev->data.u32;
    conn_t *c = &conns[i];
    if (c->fd < 0)
        return;
    if (c->state == CONNECTING && (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_close(i, 0);
            return;
        }
        c->state = CONNECTED;
        struct epoll_event mod = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &mod);
        if (c->ws && ws_handshake(i) < 0)
            return;
    }
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->ws)
            ws_readable(i, t);
        else
            on_readable(i, t);
    }
    if (c->fd >= 0 && c->sid >= 0 && (ev->events & EPOLLOUT))
        flush_sender(&senders[c->sid]);
}

static int poll_once(int timeout_ms) {
    static struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        die("epoll_wait");
    }
    double t = now_s();
    int timer = 0;
    for (int k = 0; k < n; k++) {
        if (evs[k].data.u32 == TIMER_TAG)
            timer = 1;
        else
            on_event(&evs[k], t);
    }
    return timer;
}

/* ---- phases ---- */

static void connect_all(const struct sockaddr_in *addrs, const struct sockaddr_in *ws_addr,
                        double *t_first, double *t_last) {
    double t0 = now_s(), progress_at = t0;
    int resolved_before = 0;
    *t_first = t0;
    *t_last = t0;
    while (1) {
        double t = now_s();
        int resolved = ready + failed;
        if (resolved != resolved_before) {
            resolved_before = resolved;
            progress_at = t;
            *t_last = t;
        }
        if (resolved >= opt.clients || (fd_limit_hit && resolved >= opened))
            break;
        if (t - progress_at > opt.connect_timeout)
            break;
        int may = opt.clients - opened;
        if (opt.connect_rate > 0) {
            int due = (int)((t - t0) * opt.connect_rate) + 1 - opened;
            if (due < may)
                may = due;
        }
        int pending = opened - resolved;
        if (opt.connect_window > 0 && may > opt.connect_window - pending)
            may = opt.connect_window - pending;
        for (int k = 0; k < may && !fd_limit_hit; k++)
            if (open_one(addrs, ws_addr) < 0)
                break;
        poll_once(opened < opt.clients ? 1 : 10);
    }
}

static void quiet_for(double quiet, double max) {
    double t0 = now_s();
    last_byte = t0;
    while (now_s() - last_byte < quiet && now_s() - t0 < max)
        poll_once(10);
}

static int all_delivered(void) {
    for (int sid = 0; sid < nsenders; sid++) {
        if (senders[sid].olen && conns[senders[sid].conn].fd >= 0)
            return 0;
        for (int r = first_member(senders[sid].conn); r < opened; r += member_step()) {
            if (!conns[r].rx || conns[r].fd < 0 || (uint32_t)r == senders[sid].conn)
                continue;
            if (counts[(size_t)r * (size_t)nsenders + (size_t)sid] < senders[sid].seq)
                return 0;
        }
    }
    return 1;
}

static void run(void) {
    int tfd = -1;
    if (opt.mode == RATE) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        long period = (long)(1e9 / opt.rate);
        if (period < 20000)
            period = 20000;
        struct itimerspec its = {{period / 1000000000, period % 1000000000},
                                 {period / 1000000000, period % 1000000000}};
        timerfd_settime(tfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};
        epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    }
    uint64_t scheduled = 0;
    t_run = now_s();
    running = 1;
    while (1) {
        double t = now_s();
        if (t - t_run >= opt.duration)
            break;
        if (opt.mode == FLOOD)
            flood_send(t);
        else if (opt.mode == RATE) {
            /* scheduled counts lines; each send is --batch of them, one sender's */
            uint64_t due = (uint64_t)((t - t_run) * opt.rate) + 1;
            for (; scheduled < due; scheduled += (uint64_t)opt.batch) {
                uint64_t sid = scheduled / (uint64_t)opt.batch % (uint64_t)nsenders;
                send_lines(&senders[sid], (uint32_t)sid, (uint64_t)opt.batch);
            }
        }
        int timer = poll_once(opt.mode == FLOOD ? 1 : 10);
        if (timer) {
            uint64_t expirations;
            ssize_t r = read(tfd, &expirations, sizeof expirations);
            (void)r;
        }
    }
    t_stop = now_s();
    running = 0;
    if (tfd >= 0)
        close(tfd);
}

static void drain(void) {
    double t0 = now_s(), check_at = 0;
    last_byte = t0;
    while (1) {
        double t = now_s();
        if (t - t0 > opt.drain || t - last_byte > 1.0)
            break;
        if (t - check_at > 0.05) {
            check_at = t;
            if (all_delivered())
                break;
        }
        poll_once(10);
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P | --ports P1,P2,... [--host A] [--clients N]\n"
            "  [--mode idle|flood|rate] [--senders S] [--rate MSG_PER_S] [--batch K]\n"
            "  [--window W] [--size BYTES] [--duration S] [--connect-rate C]\n"
            "  [--connect-window K] [--connect-timeout S] [--settle S] [--drain S]\n"
            "  [--limit S] [--per-sender] [--rooms R] [--send-only]\n"
            "  [--ws-port W [--ws-path /ws] [--tcp-clients K]]\n");
    exit(64);
}

static void parse_args(int argc, char **argv) {
    static struct option longs[] = {
        {"host", 1, 0, 'h'},          {"port", 1, 0, 'p'},           {"clients", 1, 0, 'n'},
        {"senders", 1, 0, 's'},       {"mode", 1, 0, 'm'},           {"rate", 1, 0, 'r'},
        {"window", 1, 0, 'w'},        {"size", 1, 0, 'b'},           {"duration", 1, 0, 'd'},
        {"connect-rate", 1, 0, 'c'},  {"connect-window", 1, 0, 'k'}, {"connect-timeout", 1, 0, 't'},
        {"settle", 1, 0, 'q'},        {"drain", 1, 0, 'D'},          {"limit", 1, 0, 'L'},
        {"per-sender", 0, 0, 'P'},    {"rooms", 1, 0, 'R'},          {"ports", 1, 0, 'o'},
        {"batch", 1, 0, 'B'},         {"ws-port", 1, 0, 'W'},        {"ws-path", 1, 0, 'U'},
        {"tcp-clients", 1, 0, 'T'},   {"send-only", 0, 0, 'S'},      {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'n': opt.clients = atoi(optarg); break;
        case 's': opt.senders = atoi(optarg); break;
        case 'm':
            opt.mode = !strcmp(optarg, "idle") ? IDLE : !strcmp(optarg, "rate") ? RATE : FLOOD;
            if (strcmp(optarg, "idle") && strcmp(optarg, "rate") && strcmp(optarg, "flood"))
                usage();
            break;
        case 'r': opt.rate = atof(optarg); break;
        case 'w': opt.window = atoi(optarg); break;
        case 'b': opt.size = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'c': opt.connect_rate = atof(optarg); break;
        case 'k': opt.connect_window = atoi(optarg); break;
        case 't': opt.connect_timeout = atof(optarg); break;
        case 'q': opt.settle = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'L': opt.limit = atof(optarg); break;
        case 'P': opt.per_sender = 1; break;
        case 'R': opt.rooms = atoi(optarg); break;
        case 'o':
            for (char *p = optarg; *p; p += *p == ',') {
                if (nports == MAX_PORTS)
                    usage();
                ports[nports++] = (int)strtol(p, &p, 10);
                if (*p && *p != ',')
                    usage();
            }
            break;
        case 'B': opt.batch = atoi(optarg); break;
        case 'W': opt.ws_port = atoi(optarg); break;
        case 'U': opt.ws_path = optarg; break;
        case 'T': opt.tcp_clients = atoi(optarg); break;
        case 'S': opt.send_only = 1; break;
        default: usage();
        }
    }
    if (!nports)
        ports[nports++] = opt.port;
    for (int k = 0; k < nports; k++)
        if (ports[k] <= 0 || ports[k] > 65535)
            usage();
    if (opt.clients < 1 || opt.window < 1 || opt.batch < 1 || opt.batch > 1000 ||
        opt.window > 1 << 20 || opt.size < 16 || opt.size > 4000 || opt.rate <= 0 ||
        opt.duration < 0 || opt.limit <= 0 || opt.rooms < 0 || opt.rooms > opt.clients)
        usage();
    if (opt.ws_port < 0 || opt.ws_port > 65535 || opt.tcp_clients < 0 ||
        opt.ws_path[0] != '/' || strpbrk(opt.ws_path, " \r\n") || strlen(opt.ws_path) > 200)
        usage();
    if (opt.mode == IDLE)
        opt.senders = 0;
    for (ring_mask = 1; ring_mask < (uint64_t)opt.window; ring_mask <<= 1)
        ;
    ring_mask--;
    if (opt.senders < 0 || opt.senders > opt.clients)
        usage();
    if ((double)opt.clients * opt.senders > 50e6) {
        fprintf(stderr, "loadgen: clients x senders too large\n");
        exit(64);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(opt.limit + 1));
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rng_state ^= now_ns() ^ (uint64_t)getpid() << 32;
    struct sockaddr_in addrs[MAX_PORTS], ws_addr = {.sin_family = AF_INET,
                                                    .sin_port = htons((uint16_t)opt.ws_port)};
    if (inet_pton(AF_INET, opt.host, &ws_addr.sin_addr) != 1)
        usage();
    for (int k = 0; k < nports; k++) {
        addrs[k] = (struct sockaddr_in){.sin_family = AF_INET,
                                        .sin_port = htons((uint16_t)ports[k])};
        if (inet_pton(AF_INET, opt.host, &addrs[k].sin_addr) != 1)
            usage();
    }
    conns = calloc((size_t)opt.clients, sizeof *conns);
    room_rx = calloc((size_t)member_step(), sizeof *room_rx);
    readbuf = malloc(READ_CAP + WS_PARTIAL_CAP);
    if (!conns || !room_rx || !readbuf)
        die("malloc");
    for (int i = 0; i < opt.clients; i++)
        conns[i].fd = -1;
    if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");

    double t_first, t_last;
    connect_all(addrs, &ws_addr, &t_first, &t_last);
    double connect_s = t_last - t_first;
    printf("phase connected ready=%d failed=%d opened=%d\n", ready, failed, opened);
    fflush(stdout);
    quiet_for(opt.settle, 5.0);

    /* Receivers: whoever is ready now; senders: the first of them. */
    for (int i = 0; i < opened; i++) {
        if (conns[i].state == READY && conns[i].fd >= 0) {
            conns[i].rx = 1;
            alive_rx++;
            room_rx[room_of((uint32_t)i)]++;
        }
    }
    if (opt.mode != IDLE) {
        senders = calloc((size_t)opt.senders, sizeof *senders);
        counts = calloc((size_t)opt.clients * (size_t)opt.senders, sizeof *counts);
        nexts = calloc((size_t)opt.clients * (size_t)opt.senders, sizeof *nexts);
        if (!senders || !counts || !nexts)
            die("malloc");
        for (int i = 0; i < opened && nsenders < opt.senders; i++) {
            if (!conns[i].rx)
                continue;
            sender_t *s = &senders[nsenders];
            s->conn = (uint32_t)i;
            s->out = malloc(OUT_CAP);
            s->ring = calloc((size_t)ring_mask + 1, sizeof *s->ring);
            if (!s->out || !s->ring)
                die("malloc");
            conns[i].sid = nsenders++;
            if (opt.send_only) { /* a sender only: not a receiver */
                conns[i].rx = 0;
                alive_rx--;
                room_rx[room_of((uint32_t)i)]--;
            }
        }
    }
    printf("phase start receivers=%d senders=%d rooms=%d\n", alive_rx, nsenders, opt.rooms);
    fflush(stdout);
    double cpu0 = cpu_s();
    if (opt.mode == IDLE) {
        t_run = now_s();
        while (now_s() - t_run < opt.duration)
            poll_once(50);
        t_stop = now_s();
    } else if (nsenders > 0 && alive_rx > (opt.send_only ? 0 : 1)) {
        run();
    } else {
        t_run = t_stop = now_s();
    }
    double gen_cpu = (cpu_s() - cpu0) / (t_stop - t_run > 0 ? t_stop - t_run : 1);
    printf("phase end\n");
    fflush(stdout);
    if (opt.mode != IDLE)
        drain();
    printf("phase done\n"); /* (before the clients close: what the server did for the run) */
    fflush(stdout);

    uint64_t sent = 0, expected = 0, received = 0, lost = 0, reordered = 0, skipped = 0;
    uint64_t stalls = 0;
    for (int sid = 0; sid < nsenders; sid++) {
        sender_t *s = &senders[sid];
        uint64_t exp_s = 0, rec_s = 0;
        for (int r = first_member(s->conn); r < opened; r += member_step()) {
            if (!conns[r].rx || conns[r].fd < 0 || (uint32_t)r == s->conn)
                continue;
            uint64_t got = counts[(size_t)r * (size_t)nsenders + (size_t)sid];
            exp_s += s->seq;
            rec_s += got < s->seq ? got : s->seq;
        }
        sent += s->seq;
        expected += exp_s;
        received += rec_s;
        lost += exp_s - rec_s;
        reordered += s->reordered;
        skipped += s->skipped;
        stalls += s->stalls;
        if (opt.per_sender)
            printf("sender sid=%d sent=%llu expected=%llu received=%llu lost=%llu "
                   "reordered=%llu\n",
                   sid, (unsigned long long)s->seq, (unsigned long long)exp_s,
                   (unsigned long long)rec_s, (unsigned long long)(exp_s - rec_s),
                   (unsigned long long)s->reordered);
    }
    int held = 0;
    for (int i = 0; i < opened; i++)
        held += conns[i].fd >= 0 && conns[i].state == READY;
    double span = t_stop - t_run > 0 ? t_stop - t_run : 1;
    printf("result clients=%d opened=%d ready=%d failed=%d held=%d dropped=%d fd_limit=%d "
           "connect_s=%.6f connect_per_s=%.1f receivers=%d senders=%d rooms=%d duration_s=%.6f "
           "sent=%llu sent_per_s=%.1f expected=%llu delivered=%llu deliveries_per_s=%.1f "
           "lost=%llu reordered=%llu garbled=%llu stray=%llu misrouted=%llu other_lines=%llu "
           "overlong=%llu skipped=%llu stalls=%llu bytes_in=%llu gen_cpu=%.3f lat_p50_us=%.1f "
           "lat_p90_us=%.1f lat_p99_us=%.1f lat_p999_us=%.1f lat_max_us=%.1f",
           opt.clients, opened, ready, failed, held, dropped, fd_limit_hit, connect_s,
           connect_s > 0 ? ready / connect_s : 0.0, alive_rx + dropped, nsenders, opt.rooms, span,
           (unsigned long long)sent, sent / span, (unsigned long long)expected,
           (unsigned long long)received, in_window / span, (unsigned long long)lost,
           (unsigned long long)reordered, (unsigned long long)garbled, (unsigned long long)stray,
           (unsigned long long)misrouted, (unsigned long long)other_lines, (unsigned long long)overlong,
           (unsigned long long)skipped, (unsigned long long)stalls, (unsigned long long)bytes_in,
           gen_cpu, percentile_us(0.50), percentile_us(0.90), percentile_us(0.99),
           percentile_us(0.999), lat_n ? lat_max / 1000.0 : -1.0);
    if (opt.ws_port)
        printf(" ws_clients=%d ws_refused=%llu ws_closed=%d ws_pings=%llu ws_bad=%llu",
               ws_opened, (unsigned long long)ws_refused, ws_closed,
               (unsigned long long)ws_pings, (unsigned long long)ws_bad);
    printf("\n");
    fflush(stdout);
    /* Abortive close: no TIME_WAIT pile-up over many runs. */
    struct linger lg = {1, 0};
    for (int i = 0; i < opened; i++)
        if (conns[i].fd >= 0)
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return 0;
}
