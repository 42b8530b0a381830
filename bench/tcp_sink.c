/* SPDX-License-Identifier: Apache-2.0 */
/* tcp_sink - the cheapest listener there is: accept, read what has come
 * (without waiting: a silent client must not stall the loop), close.
 * bench/edge_abuse.py --sink aims its bad clients here
 * instead of at the edge, so the good devices' p99 then shows what the
 * attack costs the box by itself (the attacker's CPU and the kernel's TCP
 * work for both ends of each loopback connection) with no edge code in it.
 *
 * usage: tcp_sink PORT   (listens on 127.0.0.1:PORT until killed) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int port = argc == 2 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: tcp_sink PORT\n");
        return 2;
    }
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4096) != 0) {
        perror("tcp_sink");
        return 1;
    }
    char buf[512];
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
            continue;
        (void)!read(c, buf, sizeof buf);
        close(c);
    }
}
