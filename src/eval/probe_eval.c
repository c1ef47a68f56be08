/* probe_eval.c: top-1 / top-5 accuracy and mean cross-entropy of the
 * probes' logits, in double (see probe.h). */
#include "eval/probe.h"

#include <math.h>

/* rank of the label's logit: how many classes score higher (ties go to the
 * lower index, as torch.topk's stable order on CPU) */
static size_t label_rank(const float *row, size_t K, size_t label)
{
    size_t rank = 0;
    for (size_t k = 0; k < K; k++)
        if (row[k] > row[label] || (row[k] == row[label] && k < label))
            rank++;
    return rank;
}

void cae_probe_count(cae_probe_counts *c, const float *logits, const int32_t *labels, size_t m,
                     size_t K)
{
    size_t top5 = K < 5 ? K : 5;
    for (size_t i = 0; i < m; i++) {
        const float *row = logits + i * K;
        size_t label = (size_t)labels[i], rank = label_rank(row, K, label);
        double mx = row[0], se = 0;
        for (size_t k = 1; k < K; k++)
            mx = row[k] > mx ? row[k] : mx;
        for (size_t k = 0; k < K; k++)
            se += exp((double)row[k] - mx);
        c->loss_sum += mx + log(se) - (double)row[label];
        c->c1 += rank < 1;
        c->c5 += rank < top5;
        c->n++;
    }
}

void cae_probe_result_of(const cae_probe_counts *c, cae_probe_result *r)
{
    double n = c->n ? (double)c->n : 1.0;
    r->n = c->n;
    r->loss = c->loss_sum / n;
    r->acc1 = 100.0 * (double)c->c1 / n;
    r->acc5 = 100.0 * (double)c->c5 / n;
}
