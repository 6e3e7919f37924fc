/*
 * mshare_preload.c: LD_PRELOAD library that moves a process's large anonymous shared
 * mapping into an msharefs region, so that every process that inherits it by fork
 * shares its page tables.  Written for PostgreSQL's main segment (see
 * docs/postgresql.md), generic for any program that maps its shared memory with
 * mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0) and forks.
 *
 * What it does:
 *  - mmap(NULL or hint, len >= threshold, PROT_READ|PROT_WRITE [or PROT_READ],
 *    MAP_SHARED|MAP_ANONYMOUS, ...): creates a region file in MSHARE_PRELOAD_DIR
 *    (O_CREAT|O_EXCL, 0600), maps it at a free window aligned to the unit read from
 *    MOUNT/mshare_info and sized up to whole units, then unlinks the name and closes
 *    the fd at once: forked children inherit the mapping and need no name, and the
 *    region goes with its last mapping, so nothing can leak even when the whole process
 *    tree is SIGKILLed.  One line on stderr per moved mapping.
 *  - the same request with MAP_HUGETLB (PostgreSQL's huge_pages=try and =on, the length
 *    rounded up to /proc/meminfo's Hugepagesize), by MSHARE_PRELOAD_HUGETLB:
 *    huge (default): a huge region, the same as above with MSHARE_F_HUGE set between
 *      creating the file and its first mmap: 2 MiB shmem pages mapped by PMD leaves in
 *      the region's shared tables, 4 KiB pages where the kernel has no THP to give
 *      (nothing reserved, so no vm.nr_hugepages).  The window is aligned to the unit and
 *      at least the rounded length, which is all PostgreSQL relies on.  A kernel without
 *      huge regions (series v5 and older) answers MSHARE_SET_FLAGS with ENOTTY: then the
 *      file is removed and the request answered as by refuse, the line saying why;
 *    refuse: ENOMEM and one stderr line, so huge_pages=try retries without MAP_HUGETLB
 *      and gets a 4 KiB region, and huge_pages=on fails to start with that line in its log;
 *    pass: left to the kernel (hugetlb pages from the reserved pool, no region).
 *  - munmap(start, len) with start the window's start and len <= its size: unmaps the
 *    whole window.  In the creator this drops the last link and the region is freed
 *    (its name is long gone); in a forked child (PostgreSQL's syslogger) it only
 *    detaches that process.  Any other munmap touching a window goes to the kernel as is
 *    (a partial unmap of a region fails there with EINVAL).
 *
 * Environment: MSHARE_PRELOAD_MOUNT (msharefs mount, default /sys/fs/mshare),
 * MSHARE_PRELOAD_DIR (where region files are created, default the mount; absolute, or
 * relative to the mount), MSHARE_PRELOAD_THRESHOLD (bytes, K/M/G suffix, default 32M),
 * MSHARE_PRELOAD_HUGETLB (huge|refuse|pass, default huge; anything else is refuse, with a
 * line saying so), MSHARE_PRELOAD_FALLBACK (1: map
 * normally when no region can be created; default: fail the mmap with its errno).
 * LIBMSHARE_FAKE_MOUNT (the SDK's host-test hook): when it names the mount, region
 * files are ordinary files sized with ftruncate, for tests on kernels without msharefs;
 * a huge region there is accepted and gets the file's 4 KiB pages, as in the SDK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DEFAULT_MOUNT "/sys/fs/mshare"
#define DEFAULT_THRESHOLD (32UL << 20)
#define MAX_WINDOWS 16
#define HUGE_SIZE_BITS (0x3fUL << 26) /* MAP_HUGE_MASK << MAP_HUGE_SHIFT */

/* The msharefs uapi (series v6), spelled out: the build host need not have the header. */
#ifndef MSHARE_SET_FLAGS
#define MSHARE_SET_FLAGS _IOW(0xB9, 0x01, __u64)
#endif
#ifndef MSHARE_F_HUGE
#define MSHARE_F_HUGE (1ULL << 0)
#endif

enum hugetlb_mode { HUGETLB_HUGE, HUGETLB_REFUSE, HUGETLB_PASS };

struct window {
	unsigned long start, size;
	pid_t creator;
	char name[PATH_MAX];
};

static struct window windows[MAX_WINDOWS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long sequence;

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char buf[PATH_MAX + 512];
	int n = snprintf(buf, sizeof(buf), "mshare-preload[%d]: ", (int)getpid());
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write: lines from concurrent processes do not interleave. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

static const char *env(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

static unsigned long threshold(void)
{
	const char *v = env("MSHARE_PRELOAD_THRESHOLD", NULL);
	char *end;
	unsigned long n;

	if (!v)
		return DEFAULT_THRESHOLD;
	n = strtoul(v, &end, 10);
	switch (*end) {
	case 'k': case 'K': n <<= 10; break;
	case 'm': case 'M': n <<= 20; break;
	case 'g': case 'G': n <<= 30; break;
	default: break;
	}
	return n ? n : 1;
}

static const char *mount_point(void)
{
	return env("MSHARE_PRELOAD_MOUNT", env("LIBMSHARE_FAKE_MOUNT", DEFAULT_MOUNT));
}

static int emulated(const char *mnt)
{
	const char *fake = env("LIBMSHARE_FAKE_MOUNT", NULL);

	return fake && strcmp(fake, mnt) == 0;
}

static unsigned long alignment(const char *mnt)
{
	char path[PATH_MAX], buf[32];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/mshare_info", mnt);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoul(buf, NULL, 10);
}

static const char *size_text(unsigned long n, char *buf, size_t len)
{
	if (n && !(n & ((1UL << 30) - 1)))
		snprintf(buf, len, "%lu GiB", n >> 30);
	else if (n && !(n & ((1UL << 20) - 1)))
		snprintf(buf, len, "%lu MiB", n >> 20);
	else
		snprintf(buf, len, "%lu bytes", n);
	return buf;
}

/* An aligned free window of size bytes: reserve size + align anywhere, keep the aligned
 * part's address, give the reservation back (the caller maps there with NOREPLACE). */
static unsigned long free_window(unsigned long size, unsigned long align)
{
	void *r = sys_mmap(NULL, size + align, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	unsigned long start;

	if (r == MAP_FAILED)
		return 0;
	start = ((unsigned long)r + align - 1) & ~(align - 1);
	sys_munmap(r, size + align);
	return start;
}

/*
 * Ask for 2 MiB pages: only possible between creating the file and its first mmap.
 * The emulated mount's files have no flags; like the SDK, it keeps 4 KiB pages there.
 */
static int set_huge(int fd, const char *mnt, const char **why)
{
	__u64 flags = MSHARE_F_HUGE;

	if (emulated(mnt) || ioctl(fd, MSHARE_SET_FLAGS, &flags) == 0)
		return 0;
	*why = errno == ENOTTY ? "this kernel has no huge regions (MSHARE_SET_FLAGS: ENOTTY, "
				 "msharefs older than series v6)" :
				 "cannot ask for 2 MiB pages (MSHARE_SET_FLAGS)";
	return -1;
}

/* Create, map and unlink a region for len bytes, with 2 MiB pages if huge; NULL with
 * errno on failure.  Called with the lock held. */
static struct window *move_to_region(size_t len, int prot, int huge, const char **why)
{
	const char *mnt = mount_point();
	const char *dir = env("MSHARE_PRELOAD_DIR", mnt);
	unsigned long align = alignment(mnt), size, start = 0;
	struct window *w = NULL;
	void *p = MAP_FAILED;
	int fd, i, err;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (!windows[i].size) {
			w = &windows[i];
			break;
		}
	if (!w) {
		*why = "too many regions in this process";
		errno = ENOMEM;
		return NULL;
	}
	if (!align || (align & (align - 1))) {
		*why = "no alignment unit in the mount's mshare_info (is msharefs mounted?)";
		errno = ENODEV;
		return NULL;
	}
	size = (len + align - 1) & ~(align - 1);
	if (dir[0] == '/')
		snprintf(w->name, sizeof(w->name), "%s/anon-%d-%lu", dir, (int)getpid(),
			 ++sequence);
	else
		snprintf(w->name, sizeof(w->name), "%s/%s/anon-%d-%lu", mnt, dir,
			 (int)getpid(), ++sequence);
	fd = open(w->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		*why = "cannot create the region file";
		return NULL;
	}
	if (emulated(mnt) && ftruncate(fd, (off_t)size) < 0) {
		*why = "cannot size the emulated region";
		goto out;
	}
	if (huge && set_huge(fd, mnt, why) < 0)
		goto out;
	for (i = 0; i < 8 && p == MAP_FAILED; i++) {
		start = free_window(size, align);
		if (!start) {
			*why = "no free aligned window in the address space";
			errno = ENOMEM;
			break;
		}
		p = sys_mmap((void *)start, size, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
		if (p == MAP_FAILED && errno != EEXIST)
			break;
	}
	if (p == MAP_FAILED && !*why)
		*why = "cannot map the region";
out:
	err = errno;
	/* Mapped or not, the name goes now: the mapping keeps the region alive. */
	unlink(w->name);
	close(fd);
	errno = err;
	if (p == MAP_FAILED)
		return NULL;
	w->start = (unsigned long)p;
	w->size = size;
	w->creator = getpid();
	return w;
}

static enum hugetlb_mode hugetlb_mode(void)
{
	const char *v = env("MSHARE_PRELOAD_HUGETLB", "huge");

	if (strcmp(v, "huge") == 0)
		return HUGETLB_HUGE;
	if (strcmp(v, "pass") == 0)
		return HUGETLB_PASS;
	if (strcmp(v, "refuse") != 0)
		say("MSHARE_PRELOAD_HUGETLB=%s is not huge, refuse or pass: refusing", v);
	return HUGETLB_REFUSE;
}

/* huge_pages=try then maps again without MAP_HUGETLB, and =on stops there. */
static void *refuse_hugetlb(size_t len, const char *reason)
{
	say("mmap(%zu, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB) answered ENOMEM: %s, so "
	    "huge_pages=try goes on without huge pages and huge_pages=on cannot start "
	    "(MSHARE_PRELOAD_HUGETLB=pass leaves huge pages to the kernel, without a region)",
	    len, reason);
	errno = ENOMEM;
	return MAP_FAILED;
}

static int wanted(size_t len, int prot, int flags)
{
	int type = flags & MAP_TYPE;
	int other = flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_HUGETLB |
			      (int)HUGE_SIZE_BITS);

	return type == MAP_SHARED && (flags & MAP_ANONYMOUS) && !other &&
	       (prot == (PROT_READ | PROT_WRITE) || prot == PROT_READ) &&
	       len >= threshold();
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	const char *why = NULL, *kind;
	struct window *w;
	char sz[32];
	int err, huge;
	void *p;

	/* MAP_FIXED and MAP_FIXED_NOREPLACE are "other" flags: never moved. */
	if (!wanted(len, prot, flags))
		return sys_mmap(addr, len, prot, flags, fd, off);
	huge = !!(flags & MAP_HUGETLB);
	kind = huge ? "MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB" : "MAP_SHARED|MAP_ANONYMOUS";
	if (huge) {
		switch (hugetlb_mode()) {
		case HUGETLB_PASS:
			return sys_mmap(addr, len, prot, flags, fd, off);
		case HUGETLB_REFUSE:
			return refuse_hugetlb(len, "MSHARE_PRELOAD_HUGETLB=refuse");
		case HUGETLB_HUGE:
			break;
		}
	}
	pthread_mutex_lock(&lock);
	w = move_to_region(len, prot, huge, &why);
	err = errno;
	if (w)
		say("mmap(%zu, %s) moved to msharefs region %s at %#lx (window %s%s; name "
		    "unlinked, the region goes with its last mapping)", len, kind, w->name,
		    w->start, size_text(w->size, sz, sizeof(sz)),
		    huge ? ", huge: 2 MiB pages where THP has them, 4 KiB otherwise" : "");
	p = w ? (void *)w->start : MAP_FAILED;
	pthread_mutex_unlock(&lock);
	if (w)
		return p;
	/* Before v6 the request is answered as refuse would, whatever the fallback says. */
	if (huge && err == ENOTTY)
		return refuse_hugetlb(len, why);
	if (strcmp(env("MSHARE_PRELOAD_FALLBACK", "0"), "1") == 0) {
		say("mmap(%zu, %s) not moved: %s (%s); mapped without msharefs "
		    "(MSHARE_PRELOAD_FALLBACK=1)", len, kind, why, strerror(err));
		return sys_mmap(addr, len, prot, flags, fd, off);
	}
	say("mmap(%zu, %s) failed: %s: %s (MSHARE_PRELOAD_DIR=%s)", len, kind, why,
	    strerror(err), env("MSHARE_PRELOAD_DIR", mount_point()));
	errno = err;
	return MAP_FAILED;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

int munmap(void *addr, size_t len)
{
	unsigned long a = (unsigned long)addr;
	struct window *w = NULL;
	int i, r;

	pthread_mutex_lock(&lock);
	for (i = 0; i < MAX_WINDOWS; i++)
		if (windows[i].size && a < windows[i].start + windows[i].size &&
		    a + len > windows[i].start) {
			w = &windows[i];
			break;
		}
	if (!w || a != w->start || len > w->size) {
		pthread_mutex_unlock(&lock);
		return sys_munmap(addr, len);
	}
	r = sys_munmap(addr, w->size);
	if (r == 0) {
		if (w->creator == getpid())
			say("munmap(%p, %zu): unmapped region %s in its creator: the region is "
			    "freed with its last mapping", addr, len, w->name);
		w->size = 0;
	}
	pthread_mutex_unlock(&lock);
	return r;
}
