/* sgd.h: torch.optim.SGD (dampening 0) on the host, for the attentive
 * probe's few tens of thousands of parameters, in double per element:
 *
 *   d   = g + weight_decay * p
 *   buf = momentum * buf + d          (buf starts at zero: torch's first
 *                                      step sets buf = d, the same value)
 *   d   = nesterov ? d + momentum * buf : buf
 *   p  -= lr * d
 *
 * The official attentive probe builds it through BEiT/CAE's
 * create_optimizer: --opt sgd (or nesterov) means nesterov=True, --opt
 * momentum nesterov=False; weight decay only on tensors with 2+ dims whose
 * name does not end in ".bias". */
#ifndef CAE_SGD_H
#define CAE_SGD_H

#include <stddef.h>

typedef struct {
    double lr, momentum;
    int nesterov;
} cae_sgd;

/* "sgd" / "nesterov": nesterov; "momentum": plain; else -1 (reported). */
int cae_sgd_parse(const char *opt, cae_sgd *o);
void cae_sgd_step(const cae_sgd *o, float *p, const float *grad, float *buf, size_t n,
                  double weight_decay);

#endif
