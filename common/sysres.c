/* SPDX-License-Identifier: Apache-2.0 */
/* sysres.c - open-file limit and usable CPU count, as granted to this process.
 *
 * Why: the edge holds one fd per device and runs one worker per CPU. In a
 * container the host's CPU count (sysconf) overstates what a CPU quota lets
 * the process use, and the soft fd limit a runtime hands out (often 1024) is
 * far below the hard one. Reading both here keeps every service honest.
 * Deliberately not here: cgroup v1 (no quota file is read there, the
 * affinity mask alone counts). */
#define _GNU_SOURCE
#include "sl/sysres.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t sysres_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return (uint64_t)rl.rlim_cur;
}

int sysres_cpu_max_parse(const char *text, unsigned *cpus)
{
    char quota[32];
    unsigned long long period = 0;
    if (sscanf(text, "%31s %llu", quota, &period) != 2 || period == 0)
        return -1;
    if (strcmp(quota, "max") == 0) {
        *cpus = 0;
        return 0;
    }
    if (quota[0] < '0' || quota[0] > '9')
        return -1; /* strtoull would take "-5" */
    char *end;
    unsigned long long q = strtoull(quota, &end, 10);
    if (*end != '\0' || q == 0)
        return -1;
    unsigned long long n = (q + period - 1) / period;
    *cpus = n > 4096 ? 4096u : (unsigned)n;
    return 0;
}

/* The cpu.max of this process's own cgroup (v2: "0::/path" in
 * /proc/self/cgroup); inside a cgroup namespace that path is "/". */
static unsigned cgroup_quota_cpus(void)
{
    char line[512], path[600];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return 0;
    path[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", strcmp(line + 3, "/") ? line + 3 : "");
            break;
        }
    }
    fclose(f);
    if (!path[0])
        return 0;
    f = fopen(path, "r");
    if (!f)
        return 0;
    char text[64] = "";
    unsigned cpus = 0;
    if (!fgets(text, sizeof text, f) || sysres_cpu_max_parse(text, &cpus) != 0)
        cpus = 0;
    fclose(f);
    return cpus;
}

unsigned sysres_cpus(void)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    unsigned cpus = n > 0 ? (unsigned)n : 1u;
    unsigned quota = cgroup_quota_cpus();
    if (quota > 0 && quota < cpus)
        cpus = quota;
    return cpus;
}
