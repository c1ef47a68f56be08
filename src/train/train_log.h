/* train_log.h: what a training run writes about itself.
 *
 * <output_dir>/metrics.jsonl: one JSON object per step.
 * <output_dir>/log.txt: one JSON object per epoch in the official format
 * (train_* averages, epoch, n_parameters).
 * stderr: one self-updating progress line on a terminal, plain periodic
 * lines otherwise.
 * The classification programs write per epoch instead: log.txt's official
 * line and a metrics.jsonl line with the test accuracies (cae_cls_log_*). */
#ifndef CAE_TRAIN_LOG_H
#define CAE_TRAIN_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    uint64_t step, epoch;
    double loss, loss_main, loss_align, mlm_acc;
    double lr, min_lr, weight_decay, grad_norm;
    double images_per_s, data_wait_ms, step_ms;
    double comm_ms, comm_hidden_ms; /* gradient all-reduce (multi-rank runs; < 0: none) */
    size_t skipped;
} cae_step_metrics;

typedef struct {
    FILE *metrics, *log;
    int tty, pixel_target;
    double last_print_ms;
    /* epoch averages */
    double sum_loss, sum_main, sum_align, sum_acc, sum_lr, sum_wd, sum_norm, sum_wait, sum_step;
    size_t n, skipped, images;
} cae_train_log;

/* Opens (appending: a resumed run continues the files) both files. */
int cae_train_log_open(cae_train_log *l, const char *output_dir, int pixel_target);
void cae_train_log_close(cae_train_log *l);
int cae_train_log_step(cae_train_log *l, const cae_step_metrics *m, uint64_t steps_per_epoch,
                       uint64_t epochs, double eta_s);
/* Writes the epoch's log.txt line and resets the averages. */
int cae_train_log_epoch(cae_train_log *l, uint64_t epoch, size_t n_parameters);

/* The programs' output folder: mkdir -p, then the folder's writer lock
 * (dir/.cae-cl.lock), held until the process exits or makes another output
 * folder, so that two runs never write one folder. -1 after one line naming
 * --output_dir and the part that could not be created, or the pid of the run
 * that holds the folder. Called by the one rank that writes. */
int cae_output_dir_make(const char *dir);
/* dir/name opened for appending (a resumed run continues the file); NULL
 * after one line naming the file. */
FILE *cae_output_open(const char *dir, const char *name);

double cae_now_ms(void);

/* ---- the classification programs' logs (cae-cl-finetune, the probes) ---- */
typedef struct {
    uint64_t epoch, step; /* step: global steps done */
    double train_lr, train_loss, test_loss, test_acc1, test_acc5, epoch_s;
    size_t n_parameters;
} cae_cls_epoch_log;

/* An epoch's log.txt line (official keys) and metrics.jsonl line, both
 * flushed; one line naming --output_dir when they cannot be written. */
int cae_cls_log_epoch(FILE *log, FILE *metrics, const char *output_dir, const cae_cls_epoch_log *e);
/* --eval's log.txt line (test_loss, test_acc1, test_acc5), flushed. */
int cae_cls_log_eval(FILE *log, double loss, double acc1, double acc5);
/* The run's last log.txt line (max_accuracy, best_epoch), flushed. */
int cae_cls_log_best(FILE *log, double best, int best_epoch);
/* The best test_acc1 above *best, and its epoch, among output_dir/log.txt's
 * lines of epochs below `below` (a resumed run's earlier epochs); nothing
 * changes without the file. */
void cae_cls_log_best_before(const char *output_dir, uint64_t below, double *best,
                             int *best_epoch);

#endif
