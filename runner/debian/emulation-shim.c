/* Preloaded (/etc/ld.so.preload) only in runner images of a FOREIGN architecture, whose
 * programs run under qemu-user through binfmt_misc. It makes such a runner behave as the
 * native machine it stands in for, where these calls just work:
 *
 * - fexecve(): buildah (containers/storage pkg/unshare) and runc re-execute themselves
 *   from a close-on-exec fd (a memfd copy of /proc/self/exe). The kernel's binfmt_misc
 *   refuses a close-on-exec fd with ENOENT (the interpreter could not reopen it), so
 *   every RUN step failed. A memfd copy of ourselves is executed by path instead (QEMU
 *   reports the guest program's path for /proc/self/exe); any other fd loses
 *   close-on-exec before execveat.
 * - seccomp_load(): qemu-user cannot install a guest seccomp filter (ECANCELED), so
 *   buildah's RUN failed again; the filter is skipped (the runner is a throwaway
 *   stand-in for a native machine).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int fexecve(int fd, char *const argv[], char *const envp[]) {
    char link[64], target[4096];
    ssize_t n;
    int flags;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
        target[n] = '\0';
        if (strncmp(target, "/memfd:", 7) == 0) {
            n = readlink("/proc/self/exe", target, sizeof target - 1);
            if (n > 0) {
                target[n] = '\0';
                return execve(target, argv, envp);
            }
        }
    }
    flags = fcntl(fd, F_GETFD);
    if (flags != -1 && (flags & FD_CLOEXEC))
        fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    return (int)syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
}

int seccomp_load(void *ctx) {
    (void)ctx;
    return 0;
}
