/*
 * HARMLESS LAB SAMPLE written for ioclab's elf-shm-masquerade scenario.
 *
 * It imitates a Linux implant (as shown in the NGSOTI Kunai course) but is
 * not malware: it copies itself to /dev/shm/.ioclab-kworker, runs that copy
 * under a kernel thread's name (argv[0] and prctl(PR_SET_NAME) both say
 * "kworker/u8:3"), then looks up sync.shm-lab.lab and sends one line to it
 * on port 8443. In the lab that name resolves to 127.0.33.44, a loopback
 * listener of the lab network (the sandbox's and the endpoint's network
 * namespaces each have their own loopback), so nothing leaves the machine.
 * It reads at most one line back, never runs what it receives, and waits
 * two seconds (as if until its next beacon) before it exits. The copy
 * in /dev/shm stays for the trainee to find; the scenario's cleanup
 * removes it.
 *
 * Rebuild (Debian's gcc, installed by scripts/setup.sh):
 *   gcc -O2 -Wall -Wextra -o sample.elf sample.c && strip sample.elf
 * then put the new sha256 (sha256sum sample.elf) in scenario.yaml: under
 * `sample.sha256`, `expect.iocs` and `expect.detections` (another compiler
 * gives another hash).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define COPY "/dev/shm/.ioclab-kworker"
#define FAKE_NAME "kworker/u8:3"
#define C2_NAME "sync.shm-lab.lab"
#define C2_PORT "8443"

/* Copies /proc/self/exe to COPY (mode 0755). */
static int copy_self(void)
{
    char buf[65536];
    ssize_t n;
    int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    unlink(COPY);
    int out = open(COPY, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    }
    close(in);
    close(out);
    return n < 0 ? -1 : 0;
}

/* One line to the lab C2, one line back (printed, never run). */
static int beacon(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(C2_NAME, C2_PORT, &hints, &res) != 0)
        return 1;
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    if (fd < 0) {
        freeaddrinfo(res);
        return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        char line[256];
        const char *hello = "ioclab-lab kworker beacon\n";
        if (write(fd, hello, strlen(hello)) > 0) {
            ssize_t n = read(fd, line, sizeof line - 1);
            if (n > 0) {
                line[n] = 0;
                printf("lab C2 said: %s", line);
            }
        }
    }
    close(fd);
    freeaddrinfo(res);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    if (strcmp(self, COPY) != 0) {
        if (copy_self() != 0) {
            perror("lab sample: copying to " COPY);
            return 1;
        }
        char *args[] = {FAKE_NAME, NULL};
        execv(COPY, args);
        perror("lab sample: running " COPY);
        return 1;
    }
    (void)argv;
    prctl(PR_SET_NAME, FAKE_NAME, 0, 0, 0);
    int status = beacon();
    sleep(2);
    return status;
}
