/* train_log.c: metrics.jsonl, log.txt and the progress line. */
#include "train/train_log.h"

#include "runtime/errors.h"
#include "runtime/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double cae_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The writer lock: a POSIX record lock on dir/.cae-cl.lock, held until the
 * process exits or locks another folder. Record locks belong to the process,
 * so locking the same folder again (a test, a second call) succeeds, and
 * F_GETLK names the holder. The file itself is never written: its presence
 * changes nothing in the folder's data. */
static int lock_fd = -1;
static struct stat lock_st;

static int output_dir_lock(const char *dir)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    char path[4200];
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/.cae-cl.lock", dir);
    /* already ours: opening and closing it again would drop the lock */
    if (lock_fd >= 0 && stat(path, &st) == 0 && st.st_dev == lock_st.st_dev &&
        st.st_ino == lock_st.st_ino)
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) {
        cae_errorf("--output_dir %s: cannot open %s: %s", dir, path, strerror(errno));
        return -1;
    }
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (e == EACCES || e == EAGAIN) {
            if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK)
                cae_errorf("--output_dir %s: in use by another run (pid %ld): one run per folder",
                           dir, (long)who.l_pid);
            else
                cae_errorf("--output_dir %s: in use by another run: one run per folder", dir);
        } else {
            cae_errorf("--output_dir %s: cannot lock %s: %s", dir, path, strerror(e));
        }
        close(fd);
        return -1;
    }
    if (lock_fd >= 0)
        close(lock_fd); /* one folder per process: the previous one is released */
    lock_fd = fd;
    if (fstat(fd, &lock_st) != 0)
        lock_st.st_ino = 0;
    return 0;
}

int cae_output_dir_make(const char *dir)
{
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) {
        cae_errorf("--output_dir '%s': invalid", dir);
        return -1;
    }
    memcpy(tmp, dir, n + 1);
    for (char *c = tmp + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            cae_errorf("--output_dir %s: cannot create %s: %s", dir, tmp, strerror(errno));
            return -1;
        }
        *c = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        cae_errorf("--output_dir %s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    return output_dir_lock(dir);
}

FILE *cae_output_open(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "a");
    if (!f)
        cae_errorf("%s: cannot open for writing: %s", path, strerror(errno));
    return f;
}

int cae_train_log_open(cae_train_log *l, const char *output_dir, int pixel_target)
{
    memset(l, 0, sizeof *l);
    l->pixel_target = pixel_target;
    l->tty = isatty(fileno(stderr));
    l->metrics = cae_output_open(output_dir, "metrics.jsonl");
    l->log = l->metrics ? cae_output_open(output_dir, "log.txt") : NULL;
    if (!l->metrics || !l->log) {
        cae_train_log_close(l);
        return -1;
    }
    return 0;
}

void cae_train_log_close(cae_train_log *l)
{
    if (l->tty && l->n)
        fputc('\n', stderr);
    if (l->metrics)
        fclose(l->metrics);
    if (l->log)
        fclose(l->log);
    l->metrics = l->log = NULL;
}

/* JSON has no NaN or Infinity: write null (a non-finite loss stops the
 * run anyway, but the line that records it must still parse). */
static void num(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v))
        fprintf(f, "\"%s\": %.9g%s", key, v, last ? "" : ", ");
    else
        fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
}

static void format_eta(double s, char *out, size_t size)
{
    long t = s > 0 && isfinite(s) ? (long)s : 0;
    if (t >= 3600)
        snprintf(out, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(out, size, "%ldm%02lds", t / 60, t % 60);
}

int cae_train_log_step(cae_train_log *l, const cae_step_metrics *m, uint64_t steps_per_epoch,
                       uint64_t epochs, double eta_s)
{
    double now = cae_now_ms();
    char eta[32];
    FILE *f = l->metrics;
    fprintf(f, "{\"step\": %llu, \"epoch\": %llu, ", (unsigned long long)m->step,
            (unsigned long long)m->epoch);
    num(f, "loss", m->loss, 0);
    num(f, "loss_main", m->loss_main, 0);
    num(f, "loss_align", m->loss_align, 0);
    if (!l->pixel_target)
        num(f, "mlm_acc", m->mlm_acc, 0);
    num(f, "lr", m->lr, 0);
    num(f, "min_lr", m->min_lr, 0);
    num(f, "weight_decay", m->weight_decay, 0);
    num(f, "grad_norm", m->grad_norm, 0);
    num(f, "images_per_s", m->images_per_s, 0);
    num(f, "data_wait_ms", m->data_wait_ms, 0);
    if (m->comm_ms >= 0) {
        num(f, "allreduce_ms", m->comm_ms, 0);
        num(f, "allreduce_hidden_ms", m->comm_hidden_ms, 0);
    }
    num(f, "step_ms", m->step_ms, 1);
    fputs("}\n", f);
    if (fflush(f) != 0) {
        cae_errorf("metrics.jsonl: write failed: %s", strerror(errno));
        return -1;
    }
    l->sum_loss += m->loss;
    l->sum_main += m->loss_main;
    l->sum_align += m->loss_align;
    l->sum_acc += m->mlm_acc;
    l->sum_lr += m->lr;
    l->sum_wd += m->weight_decay;
    l->sum_norm += m->grad_norm;
    l->sum_wait += m->data_wait_ms;
    l->sum_step += m->step_ms;
    l->skipped += m->skipped;
    l->n++;
    format_eta(eta_s, eta, sizeof eta);
    if (l->tty) {
        fprintf(stderr, "\r\033[Kepoch %llu/%llu  step %llu/%llu  %.1f img/s  ETA %s  loss %.4f",
                (unsigned long long)m->epoch + 1, (unsigned long long)epochs,
                (unsigned long long)(m->step % steps_per_epoch) + 1,
                (unsigned long long)steps_per_epoch, m->images_per_s, eta, m->loss);
        fflush(stderr);
    } else if (now - l->last_print_ms >= 10000.0 || m->step % steps_per_epoch == 0) {
        fprintf(stderr, "epoch %llu/%llu step %llu/%llu  %.1f img/s  ETA %s  loss %.4f  main %.4f  "
                        "align %.4f  lr %.3g  grad_norm %.3g\n",
                (unsigned long long)m->epoch + 1, (unsigned long long)epochs,
                (unsigned long long)(m->step % steps_per_epoch) + 1,
                (unsigned long long)steps_per_epoch, m->images_per_s, eta, m->loss, m->loss_main,
                m->loss_align, m->lr, m->grad_norm);
        l->last_print_ms = now;
    }
    return 0;
}

/* Resident memory (KiB, from /proc/self/status) and open descriptors
 * (entries of /proc/self/fd): what cae-cl-soak watches for leaks. -1 where
 * /proc is not there. */
static void process_usage(long *rss_kib, long *fds)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    DIR *d;
    *rss_kib = *fds = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss_kib = atol(line + 6);
    if (f)
        fclose(f);
    d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        long n = 0;
        while ((e = readdir(d)))
            n += e->d_name[0] != '.';
        closedir(d);
        *fds = n - 1; /* the directory stream itself */
    }
}

int cae_train_log_epoch(cae_train_log *l, uint64_t epoch, size_t n_parameters)
{
    long rss_kib, fds;
    double n = l->n ? (double)l->n : 1.0;
    FILE *f = l->log;
    if (l->tty && l->n)
        fputc('\n', stderr);
    fputc('{', f);
    num(f, "train_lr", l->sum_lr / n, 0);
    num(f, "train_min_lr", l->sum_lr / n, 0);
    num(f, "train_loss", l->sum_loss / n, 0);
    num(f, "train_loss_main", l->sum_main / n, 0);
    num(f, "train_loss_align", l->sum_align / n, 0);
    if (!l->pixel_target)
        num(f, "train_mlm_acc", l->sum_acc / n, 0);
    num(f, "train_weight_decay", l->sum_wd / n, 0);
    num(f, "train_grad_norm", l->sum_norm / n, 0);
    fprintf(f, "\"train_skipped_images\": %zu, \"train_data_wait_share\": %.4f, ", l->skipped,
            l->sum_step > 0 ? l->sum_wait / l->sum_step : 0.0);
    process_usage(&rss_kib, &fds);
    fprintf(f, "\"rss_kib\": %ld, \"open_fds\": %ld, ", rss_kib, fds);
    fprintf(f, "\"epoch\": %llu, \"n_parameters\": %zu}\n", (unsigned long long)epoch, n_parameters);
    if (fflush(f) != 0) {
        cae_errorf("log.txt: write failed: %s", strerror(errno));
        return -1;
    }
    fprintf(stderr, "epoch %llu done: loss %.4f (main %.4f, align %.4f), %zu images skipped\n",
            (unsigned long long)epoch + 1, l->sum_loss / n, l->sum_main / n, l->sum_align / n,
            l->skipped);
    l->sum_loss = l->sum_main = l->sum_align = l->sum_acc = l->sum_lr = l->sum_wd = 0;
    l->sum_norm = l->sum_wait = l->sum_step = 0;
    l->n = l->skipped = 0;
    return 0;
}

int cae_cls_log_epoch(FILE *log, FILE *metrics, const char *output_dir, const cae_cls_epoch_log *e)
{
    fprintf(log,
            "{\"train_lr\": %.8g, \"train_loss\": %.8g, \"test_loss\": %.8g, \"test_acc1\": "
            "%.6g, \"test_acc5\": %.6g, \"epoch\": %llu, \"n_parameters\": %zu}\n",
            e->train_lr, e->train_loss, e->test_loss, e->test_acc1, e->test_acc5,
            (unsigned long long)e->epoch, e->n_parameters);
    fprintf(metrics,
            "{\"epoch\": %llu, \"step\": %llu, \"train_loss\": %.8g, \"lr\": %.8g, "
            "\"test_loss\": %.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g, \"epoch_s\": %.3f}\n",
            (unsigned long long)e->epoch, (unsigned long long)e->step, e->train_loss, e->train_lr,
            e->test_loss, e->test_acc1, e->test_acc5, e->epoch_s);
    if (fflush(log) != 0 || fflush(metrics) != 0) {
        cae_errorf("--output_dir %s: cannot write the logs: %s", output_dir, strerror(errno));
        return -1;
    }
    return 0;
}

int cae_cls_log_eval(FILE *log, double loss, double acc1, double acc5)
{
    fprintf(log, "{\"test_loss\": %.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g}\n", loss, acc1,
            acc5);
    return fflush(log) == 0 ? 0 : -1;
}

int cae_cls_log_best(FILE *log, double best, int best_epoch)
{
    fprintf(log, "{\"max_accuracy\": %.6g, \"best_epoch\": %d}\n", best, best_epoch);
    return fflush(log) == 0 ? 0 : -1;
}

void cae_cls_log_best_before(const char *output_dir, uint64_t below, double *best,
                             int *best_epoch)
{
    char path[4200], line[4096], why[256];
    struct stat st;
    FILE *f;
    int n = snprintf(path, sizeof path, "%s/log.txt", output_dir);
    if (n < 0 || (size_t)n >= sizeof path || !(f = cae_fopen_regular(path, &st, why, sizeof why)))
        return;
    while (fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "\"test_acc1\": "), *e = strstr(line, "\"epoch\": ");
        double acc;
        int ep;
        if (!a || !e || sscanf(a + 13, "%lf", &acc) != 1 || sscanf(e + 9, "%d", &ep) != 1)
            continue;
        if (ep >= 0 && (uint64_t)ep < below && acc > *best) {
            *best = acc;
            *best_epoch = ep;
        }
    }
    fclose(f);
}
