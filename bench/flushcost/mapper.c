// SPDX-License-Identifier: GPL-2.0
/*
 * A region mapper that costs a few pages: the n1000 plan's sharers 1..N-1.
 *
 * A forked Python sharer copies about 200 pages of its parent's heap on first use, so
 * 1,000 of them put 800 MB of movable memory next to the region, enough to change what
 * compaction reaches.  This one waits for a line on stdin, maps the region
 * (pread of struct mshare_info, then mmap at its start, as bench/flushcost/mem.py's
 * attach does), reads one byte of every page of the first NBYTES, prints
 * "FAULTS NANOSECONDS" and sleeps until stdin closes.
 *
 * usage: mapper PATH NBYTES CPU   (CPU -1: not pinned)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t info[2];	/* struct mshare_info: start, size */
	volatile unsigned char *p;
	unsigned long sum = 0;
	long nbytes, f0, off;
	long long t0;
	char line[64];
	int fd, cpu;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PATH NBYTES CPU\n", argv[0]);
		return 2;
	}
	nbytes = atol(argv[2]);
	cpu = atoi(argv[3]);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			return perror("sched_setaffinity"), 1;
	}
	if (!fgets(line, sizeof(line), stdin))
		return 0;	/* the driver gave up before the region existed */
	fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return perror(argv[1]), 1;
	if (pread(fd, info, sizeof(info), 0) != sizeof(info))
		return perror("pread mshare_info"), 1;
	if ((long)info[1] < nbytes)
		return fprintf(stderr, "region is %lu bytes\n", (unsigned long)info[1]), 1;
	p = mmap((void *)info[0], info[1], PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (p == MAP_FAILED)
		return perror("mmap"), 1;
	f0 = minflt();
	t0 = now_ns();
	for (off = 0; off < nbytes; off += 4096)
		sum += p[off];
	printf("%ld %lld %lu\n", minflt() - f0, now_ns() - t0, sum);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
