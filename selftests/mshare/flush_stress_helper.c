// SPDX-License-Identifier: GPL-2.0
/*
 * The processes of test_tlb_flush.py's stale-translation stress, each pinned to one CPU
 * and driven through a shared control file (an array of 64-bit words, layout below) that
 * the test maps too.  C, not Python: a reader must read region pages in a tight loop that
 * never enters the kernel, so that a translation its CPU cached stays in use until a
 * flush removes it (QEMU's TCG drops its software TLB on every CR3 load, so a reader that
 * blocked or switched would hide a missing flush).
 *
 * Region pages: word 0 and words 2..511 of page p of generation g hold
 * TAG(g, p) = 0x4d53 << 48 | (g & 0xffff) << 32 | p; word 1 holds the page's epoch,
 * g << 32 | e.  The epoch writer stores e into word 1 of every page, then publishes
 * g << 32 | e in CTL_EPOCH.  x86 keeps stores in order and loads in order, so a reader
 * that loads CTL_EPOCH and then a page's word 1 must see at least that epoch: a smaller
 * one was read through a translation to the page's old frame (a stale read).  A tag word
 * that is not TAG(g, p) is a foreign read: the scribbler's pattern (a freed frame
 * reused), an older generation's tag (a translation that survived the unlink), another
 * page's tag, or anything else.
 *
 * usage: flush_stress_helper ROLE CTLFILE CPU [SLOT [NAP_US]]
 *   reader    SLOT: reads every page of each generation until it is released; with
 *             NAP_US, sleeps that long after each pass, so that its CPU idles with the
 *             reader's mm loaded (lazy TLB) and must catch up when the reader returns
 *   epoch     writes epochs into each generation until it is released
 *   scribbler fills freshly allocated anonymous pages with SCRIBBLE until CTL_STOP
 *
 *        flush_stress_helper lazy REGION ROUNDS
 *   lazy      the lazy-CPU test: a thread on CPU 1 touches the window of REGION (an
 *             established region) and blocks; on CPU 0, munmap of the window, read
 *             between two reads of CPU 1's "TLB" row of /proc/interrupts; then the
 *             control: the thread touches a private page and blocks, and CPU 0 drops
 *             it with MADV_DONTNEED.  One line a round: "ROUND WINDOW CONTROL", the
 *             shootdowns CPU 1 took during each.  C so that nothing else in the
 *             process maps or unmaps memory meanwhile (an allocator's munmap that
 *             frees a page table interrupts lazy CPUs too).
 *
 * Generations: the test writes the region's path into CTL_PATH, then g into CTL_GEN.
 * Readers and the epoch writer open it, map it at its start, touch every page, and
 * store g into their slot's S_ATTACHED; when CTL_RELEASE reaches g they unmap and close
 * it and store g into S_DETACHED.  CTL_STOP: every role exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096UL
#define WORDS (PAGE / 8)
#define MAGIC 0x4d53ULL
#define SCRIBBLE 0x5343524942424c45ULL /* "SCRIBBLE" */

/* Control words. */
enum {
	CTL_GEN = 0,		/* generation to attach */
	CTL_RELEASE = 1,	/* generations up to this one: detach */
	CTL_STOP = 2,
	CTL_EPOCH = 3,		/* g << 32 | e, published by the epoch writer */
	CTL_NPAGES = 4,
	CTL_SCRIBBLED = 6,	/* pages the scribbler filled */
	CTL_EPOCHS = 7,		/* epoch passes written */
	CTL_PATH = 16,		/* NUL-terminated, 256 bytes */
	CTL_SLOTS = 64,		/* slot i at CTL_SLOTS + i * SLOT_WORDS */
	SLOT_WORDS = 16,
	CTL_WORDS = CTL_SLOTS + 9 * SLOT_WORDS,
};

/* Slot words (cumulative over generations, except the samples). */
enum {
	S_ATTACHED = 0,
	S_DETACHED = 1,
	S_READS = 2,		/* page reads (3 words each) */
	S_STALE = 3,		/* word 1 older than the published epoch */
	S_SCRIBBLED = 4,	/* tag word == SCRIBBLE */
	S_OLD_GEN = 5,		/* an older generation's tag of the same page */
	S_OTHER = 6,		/* any other wrong tag word */
	S_PASSES = 7,
	S_BAD_PAGE = 8,		/* first bad read: page, value, expected, published epoch */
	S_BAD_VALUE = 9,
	S_BAD_WANT = 10,
	S_BAD_EPOCH = 11,
	S_BAD_GEN = 12,
};

static volatile uint64_t *ctl;

static uint64_t ld(int i)
{
	return __atomic_load_n(&ctl[i], __ATOMIC_ACQUIRE);
}

static void st(int i, uint64_t v)
{
	__atomic_store_n(&ctl[i], v, __ATOMIC_RELEASE);
}

static void die(const char *what)
{
	fprintf(stderr, "flush_stress_helper: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

static void nap(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static uint64_t tag(uint64_t g, uint64_t p)
{
	return MAGIC << 48 | (g & 0xffff) << 32 | p;
}

/* Wait for a generation newer than @last (0 when told to stop). */
static uint64_t next_gen(uint64_t last)
{
	for (;;) {
		uint64_t g = ld(CTL_GEN);

		if (ld(CTL_STOP))
			return 0;
		if (g > last && ld(CTL_RELEASE) < g)
			return g;
		nap(500);
	}
}

/* Open the generation's region and map it whole at its start (struct mshare_info). */
static volatile uint64_t *attach(int *fd, uint64_t *size)
{
	uint64_t info[2];
	char path[257];
	void *addr;

	memcpy(path, (const char *)&ctl[CTL_PATH], 256);
	path[256] = 0;
	*fd = open(path, O_RDWR);
	if (*fd < 0)
		die(path);
	if (pread(*fd, info, sizeof(info), 0) != sizeof(info))
		die("read mshare_info");
	*size = info[1];
	addr = mmap((void *)(uintptr_t)info[0], info[1], PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_FIXED_NOREPLACE, *fd, 0);
	if (addr == MAP_FAILED)
		die("mmap");
	return addr;
}

/* attach(), then one read of each of the n pages (every translation in place before the
 * run) and the slot says this generation is attached: how the readers and the epoch
 * writer start. */
static volatile uint64_t *attach_touched(int idx, uint64_t g, uint64_t n, int *fd,
					 uint64_t *size)
{
	volatile uint64_t *base = attach(fd, size);
	uint64_t p;

	for (p = 0; p < n; p++)
		(void)base[p * WORDS];
	st(CTL_SLOTS + idx * SLOT_WORDS + S_ATTACHED, g);
	return base;
}

static void detach(volatile uint64_t *base, int fd, uint64_t size)
{
	if (munmap((void *)base, size))
		die("munmap");
	close(fd);
}

static void record(volatile uint64_t *slot, uint64_t g, uint64_t p, uint64_t v,
		   uint64_t want, uint64_t pub)
{
	if (slot[S_BAD_WANT])
		return;
	slot[S_BAD_PAGE] = p;
	slot[S_BAD_VALUE] = v;
	slot[S_BAD_EPOCH] = pub;
	slot[S_BAD_GEN] = g;
	__atomic_store_n(&slot[S_BAD_WANT], want, __ATOMIC_RELEASE);
}

static void classify(volatile uint64_t *slot, uint64_t g, uint64_t p, uint64_t v,
		     uint64_t pub)
{
	uint64_t want = tag(g, p);

	if (v == SCRIBBLE)
		slot[S_SCRIBBLED]++;
	else if (v >> 48 == MAGIC && (v & 0xffffffff) == p)
		slot[S_OLD_GEN]++;
	else
		slot[S_OTHER]++;
	record(slot, g, p, v, want, pub);
}

static void reader(int idx, long nap_us)
{
	volatile uint64_t *slot = &ctl[CTL_SLOTS + idx * SLOT_WORDS];
	uint64_t g = 0;

	while ((g = next_gen(g))) {
		uint64_t n = ld(CTL_NPAGES), p, off = 2, reads = 0;
		volatile uint64_t *base;
		uint64_t size;
		int fd;

		base = attach_touched(idx, g, n, &fd, &size);
		while (ld(CTL_RELEASE) < g && !ld(CTL_STOP)) {
			for (p = 0; p < n; p++) {
				volatile uint64_t *w = base + p * WORDS;
				uint64_t pub = ld(CTL_EPOCH);
				uint64_t t0 = w[0], ep = w[1], t1 = w[off];
				uint64_t want = tag(g, p);

				if (t0 != want)
					classify(slot, g, p, t0, pub);
				else if (t1 != want)
					classify(slot, g, p, t1, pub);
				else if (pub >> 32 == g && ep < pub) {
					slot[S_STALE]++;
					record(slot, g, p, ep, pub, pub);
				}
			}
			reads += n;
			slot[S_PASSES]++;
			off = off == WORDS - 1 ? 2 : off + 1;
			if (nap_us)
				nap(nap_us);
		}
		slot[S_READS] += reads;
		detach(base, fd, size);
		st(CTL_SLOTS + idx * SLOT_WORDS + S_DETACHED, g);
	}
}

static void epoch_writer(int idx)
{
	uint64_t g = 0;

	while ((g = next_gen(g))) {
		uint64_t n = ld(CTL_NPAGES), p, e;
		volatile uint64_t *base;
		uint64_t size;
		int fd;

		base = attach_touched(idx, g, n, &fd, &size);
		for (e = 1; ld(CTL_RELEASE) < g && !ld(CTL_STOP); e++) {
			for (p = 0; p < n; p++)
				base[p * WORDS + 1] = g << 32 | e;
			st(CTL_EPOCH, g << 32 | e);
			st(CTL_EPOCHS, ld(CTL_EPOCHS) + 1);
			nap(2000);
		}
		detach(base, fd, size);
		st(CTL_SLOTS + idx * SLOT_WORDS + S_DETACHED, g);
	}
}

#define CHUNK_PAGES 256
#define RING 16

static void scribbler(void)
{
	void *ring[RING] = { 0 };
	unsigned long i = 0;

	while (!ld(CTL_STOP)) {
		void **slot = &ring[i++ % RING];
		uint64_t *c, k;

		if (*slot)
			munmap(*slot, CHUNK_PAGES * PAGE);
		c = mmap(NULL, CHUNK_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c == MAP_FAILED)
			die("mmap scribble");
		madvise(c, CHUNK_PAGES * PAGE, MADV_NOHUGEPAGE);
		for (k = 0; k < CHUNK_PAGES * WORDS; k++)
			c[k] = SCRIBBLE;
		*slot = c;
		st(CTL_SCRIBBLED, ld(CTL_SCRIBBLED) + CHUNK_PAGES);
		nap(1000);
	}
}

/* ---------------------------------------------------------------- lazy */

static int cmd_pipe[2], ack_pipe[2];
static volatile uint64_t *lazy_window;
static volatile char *lazy_anon;
static int irq_fd;
static char irq_buf[1 << 16];

static long tlb_count(int cpu)
{
	ssize_t n = pread(irq_fd, irq_buf, sizeof(irq_buf) - 1, 0);
	char *p;
	long v = -1;
	int i;

	if (n <= 0)
		die("read /proc/interrupts");
	irq_buf[n] = 0;
	p = strstr(irq_buf, "TLB:");
	if (!p) {
		fprintf(stderr, "no TLB row in /proc/interrupts\n");
		exit(2);
	}
	p += 4;
	for (i = 0; i <= cpu; i++)
		v = strtol(p, &p, 10);
	return v;
}

static void *lazy_thread(void *arg)
{
	char c;

	(void)arg;
	pin(1);
	while (read(cmd_pipe[0], &c, 1) == 1 && c != 'q') {
		if (c == 'w')
			(void)lazy_window[0];
		else
			lazy_anon[0] = 1;
		if (write(ack_pipe[1], &c, 1) != 1)
			die("ack");
	}
	return NULL;
}

/* Have the thread touch (c) and block; return CPU 1's count once it idles. */
static long touch_then_idle(char c)
{
	char a;

	if (write(cmd_pipe[1], &c, 1) != 1 || read(ack_pipe[0], &a, 1) != 1)
		die("pipe");
	nap(20000);
	return tlb_count(1);
}

static int lazy(const char *path, int rounds)
{
	uint64_t info[2];
	pthread_t t;
	int fd, i;
	char q = 'q';

	fd = open(path, O_RDWR);
	if (fd < 0)
		die(path);
	if (pread(fd, info, sizeof(info), 0) != sizeof(info))
		die("read mshare_info");
	irq_fd = open("/proc/interrupts", O_RDONLY);
	if (irq_fd < 0)
		die("/proc/interrupts");
	lazy_anon = mmap(NULL, 2UL << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (lazy_anon == MAP_FAILED)
		die("mmap anon");
	if (pipe(cmd_pipe) || pipe(ack_pipe))
		die("pipe");
	pin(0);
	if (pthread_create(&t, NULL, lazy_thread, NULL))
		die("pthread_create");
	for (i = 0; i < rounds; i++) {
		long c0, window, control;
		void *addr;

		addr = mmap((void *)(uintptr_t)info[0], info[1], PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
		if (addr == MAP_FAILED)
			die("mmap window");
		lazy_window = addr;
		c0 = touch_then_idle('w');
		if (munmap(addr, info[1]))
			die("munmap window");
		window = tlb_count(1) - c0;
		c0 = touch_then_idle('a');
		if (madvise((void *)lazy_anon, PAGE, MADV_DONTNEED))
			die("madvise");
		control = tlb_count(1) - c0;
		printf("%d %ld %ld\n", i, window, control);
	}
	if (write(cmd_pipe[1], &q, 1) != 1)
		die("quit");
	pthread_join(t, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	int fd, cpu, idx = 0;
	long nap_us = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: %s reader|epoch|scribbler CTLFILE CPU [SLOT [NAP_US]]\n",
			argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "lazy"))
		return lazy(argv[2], atoi(argv[3]));
	fd = open(argv[2], O_RDWR);
	if (fd < 0)
		die(argv[2]);
	ctl = mmap(NULL, CTL_WORDS * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ctl == MAP_FAILED)
		die("mmap ctl");
	cpu = atoi(argv[3]);
	if (argc > 4)
		idx = atoi(argv[4]);
	if (argc > 5)
		nap_us = atol(argv[5]);
	pin(cpu);
	if (!strcmp(argv[1], "reader"))
		reader(idx, nap_us);
	else if (!strcmp(argv[1], "epoch"))
		epoch_writer(idx);
	else if (!strcmp(argv[1], "scribbler"))
		scribbler();
	else
		return 2;
	return 0;
}
