// SPDX-License-Identifier: GPL-2.0
/*
 * The fault-injection sweep of test_fault_injection.py: for N = 1, 2, ... arm
 * /proc/thread-self/fail-nth with N right before one system call (or, for "touch", one
 * first write to a region page in a forked child), read it back right after, disarm, and
 * print one line per N:
 *
 *     N OUTCOME LEFT RETRY
 *
 * OUTCOME: "ok", an errno name (E...), or "sig:NAME" for a touching child killed by a
 * signal.  LEFT: fail-nth read back (0: the Nth fault-injection point was reached, so a
 * failure was injected).  RETRY: the outcome of the same step done again unarmed
 * ("ok" expected), or "-" when the armed step succeeded.  A line "check N TEXT" reports a
 * broken rule (a file left by a failed create, an establish that half happened).  The
 * sweep stops after the first N that injected nothing, or at MAX.
 *
 * C, not Python: between arming and the call nothing else may reach an injection point
 * (Python allocates, and faults in fresh heap pages, all the time).
 *
 * usage: fail_nth_helper OP MAX PATH [ARG]
 *   create    PATH: a region name to create (O_CREAT|O_EXCL) and remove, per N
 *   establish PATH: likewise, armed around its first mmap at ARG (hex start), 1 unit
 *   attach    PATH: an established region, armed around this opener's mmap
 *   touch     PATH: an established region; each N a forked child writes page N first
 *   unlink    PATH: a region name to create, establish at ARG, populate, unmap and close,
 *                   armed around its unlink
 *   umount    PATH: an empty directory to mount msharefs on, armed around the umount
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static int nth_fd;
static char nbuf[32];
static unsigned long align_unit;

static void arm(int n)
{
	int len = snprintf(nbuf, sizeof(nbuf), "%d", n);

	if (pwrite(nth_fd, nbuf, len, 0) != len) {
		perror("write fail-nth");
		exit(2);
	}
}

/* fail-nth read back, then disarmed: nothing after the call may be failed instead. */
static int disarm(void)
{
	char buf[32] = "";
	ssize_t got = pread(nth_fd, buf, sizeof(buf) - 1, 0);

	if (pwrite(nth_fd, "0", 1, 0) != 1 || got <= 0) {
		perror("fail-nth");
		exit(2);
	}
	return atoi(buf);
}

static const char *outcome(int err)
{
	static char buf[32];
	const char *name;

	if (!err)
		return "ok";
	name = strerrorname_np(err);
	if (name)
		return name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

static int err_of(long ret)
{
	return ret < 0 ? errno : 0;
}

static void *map_at(unsigned long start, unsigned long size, int fd)
{
	return mmap((void *)start, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
}

/* map_at() with fail-nth armed for n: its result, the error (0 if it mapped) taken
 * before disarm() can change errno, and what disarm() read back. */
static void *armed_map(int n, unsigned long start, unsigned long size, int fd, int *err,
		       int *left)
{
	void *p;

	arm(n);
	p = map_at(start, size, fd);
	*err = p == MAP_FAILED ? errno : 0;
	*left = disarm();
	return p;
}

/* After an injected failure: the same map_at() again, disarmed, and how it went. */
static const char *remap(unsigned long start, unsigned long size, int fd, void **p)
{
	*p = map_at(start, size, fd);
	return outcome(*p == MAP_FAILED ? errno : 0);
}

static void info_of(int fd, unsigned long *start, unsigned long *size)
{
	unsigned long info[2];

	if (pread(fd, info, sizeof(info), 0) != sizeof(info)) {
		fprintf(stderr, "region not established\n");
		exit(2);
	}
	*start = info[0];
	*size = info[1];
}

static void line(int n, int err, int left, const char *retry)
{
	printf("%d %s %d %s\n", n, outcome(err), left, retry);
	fflush(stdout);
}

static int die(const char *what)
{
	perror(what);
	exit(2);
}

/* One N of a system-call step: returns the number read back (0: injected). */
typedef int (*step_fn)(int n, const char *path, unsigned long arg);

static int step_create(int n, const char *path, unsigned long arg)
{
	int fd, err, left;
	const char *retry = "-";

	(void)arg;
	arm(n);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	err = err_of(fd);
	left = disarm();
	if (err) {
		if (access(path, F_OK) == 0)
			printf("check %d a failed create left %s\n", n, path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		retry = outcome(err_of(fd));
	}
	line(n, err, left, retry);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return left;
}

static int step_establish(int n, const char *path, unsigned long start)
{
	int fd, err, left;
	void *p;
	unsigned long info[2];
	const char *retry = "-";

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		die("create");
	p = armed_map(n, start, align_unit, fd, &err, &left);
	if (err) {
		if (pread(fd, info, sizeof(info), 0) != 0)
			printf("check %d a failed first mmap established the region\n", n);
		retry = remap(start, align_unit, fd, &p);
	}
	line(n, err, left, retry);
	if (p != MAP_FAILED)
		munmap(p, align_unit);
	close(fd);
	unlink(path);
	return left;
}

static int step_attach(int n, const char *path, unsigned long arg)
{
	unsigned long start, size;
	int fd, err, left;
	void *p;
	const char *retry = "-";

	(void)arg;
	fd = open(path, O_RDWR);
	if (fd < 0)
		die("open");
	info_of(fd, &start, &size);
	p = armed_map(n, start, size, fd, &err, &left);
	if (err)
		retry = remap(start, size, fd, &p);
	line(n, err, left, retry);
	if (p != MAP_FAILED)
		munmap(p, size);
	close(fd);
	return left;
}

static int step_unlink(int n, const char *path, unsigned long start)
{
	int fd, err, left;
	char *p;
	const char *retry = "-";

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		die("create");
	p = map_at(start, align_unit, fd);
	if (p == MAP_FAILED)
		die("establish");
	memset(p, 1, 16 * 4096);
	munmap(p, align_unit);
	close(fd);
	arm(n);
	err = err_of(unlink(path));
	left = disarm();
	if (err)
		retry = outcome(err_of(unlink(path)));
	line(n, err, left, retry);
	return left;
}

static int step_umount(int n, const char *target, unsigned long arg)
{
	int err, left;
	const char *retry = "-";

	(void)arg;
	if (mount("msharefs", target, "msharefs", 0, NULL))
		die("mount");
	arm(n);
	err = err_of(umount2(target, 0));
	left = disarm();
	if (err)
		retry = outcome(err_of(umount2(target, 0)));
	line(n, err, left, retry);
	return left;
}

/* A forked child writes page n of the window: it exits 0 with LEFT as its status's
 * low byte (capped), or dies of the injected failure's signal. */
static void touch_child(char *page, int n)
{
	int left;

	/* The inherited fd is the parent's thread's fail-nth: open this one's. */
	close(nth_fd);
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (nth_fd < 0)
		die("/proc/thread-self/fail-nth");
	/* Copy-on-write the stack and data this child uses before arming: disarm() runs
	 * deeper than anything after arm(). */
	disarm();
	arm(n);
	*(volatile char *)page = 1;
	left = disarm();
	_exit(left > 100 ? 100 : left);
}

static int touch_once(char *page, int n, int *left)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (!pid)
		touch_child(page, n);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	*left = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
	return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static int sweep_touch(int max, const char *path)
{
	unsigned long start, size;
	int fd, n, sig, rsig, left, rleft;
	char *base;
	char out[32], retry[32];

	fd = open(path, O_RDWR);
	if (fd < 0)
		die("open");
	info_of(fd, &start, &size);
	base = map_at(start, size, fd);
	if (base == MAP_FAILED)
		die("attach");
	for (n = 1; n <= max; n++) {
		char *page = base + (unsigned long)n * 4096;

		sig = touch_once(page, n, &left);
		if (sig) {
			snprintf(out, sizeof(out), "sig:%s", sigabbrev_np(sig));
			rsig = touch_once(page, 0, &rleft);
			snprintf(retry, sizeof(retry), "%s",
				 rsig ? sigabbrev_np(rsig) : (*page == 1 ? "ok" : "lost"));
		} else {
			snprintf(out, sizeof(out), "%s", *page == 1 ? "ok" : "lost");
			snprintf(retry, sizeof(retry), "-");
		}
		printf("%d %s %d %s\n", n, out, left, retry);
		fflush(stdout);
		if (!sig && left)
			break;
	}
	munmap(base, size);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *op, *path;
	unsigned long arg = 0;
	int max, n;
	step_fn fn = NULL;
	FILE *f;

	if (argc < 4) {
		fprintf(stderr, "usage: %s OP MAX PATH [ARG]\n", argv[0]);
		return 2;
	}
	op = argv[1];
	max = atoi(argv[2]);
	path = argv[3];
	if (argc > 4)
		arg = strtoul(argv[4], NULL, 16);
	f = fopen("/sys/fs/mshare/mshare_info", "r");
	if (!f || fscanf(f, "%lu", &align_unit) != 1)
		die("mshare_info");
	fclose(f);
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (nth_fd < 0)
		die("/proc/thread-self/fail-nth");
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Fault in everything this process uses before any arming. */
	printf("start %s\n", op);
	fflush(stdout);
	if (!strcmp(op, "touch"))
		return sweep_touch(max, path);
	if (!strcmp(op, "create"))
		fn = step_create;
	else if (!strcmp(op, "establish"))
		fn = step_establish;
	else if (!strcmp(op, "attach"))
		fn = step_attach;
	else if (!strcmp(op, "unlink"))
		fn = step_unlink;
	else if (!strcmp(op, "umount"))
		fn = step_umount;
	if (!fn) {
		fprintf(stderr, "unknown op %s\n", op);
		return 2;
	}
	for (n = 1; n <= max; n++)
		if (fn(n, path, arg))
			break;
	return 0;
}
