/* posembed.c: the fixed 2-D sin-cos position table, computed on the host.
 *
 * Not trained and no gradient: the model uploads the table once. Values are
 * computed in double and rounded to float once, so every build and device
 * starts from the same table (and the official one, up to that rounding).
 */
#include "ops/ops.h"

#include <math.h>

/* table [(G*G + 1), C]: row 0 (cls) zeros; patch n = r*G + c in row n + 1 is
 * [sin(r w), cos(r w), sin(c w), cos(c w)], w_j = 1 / 10000^(j / (C/4)) */
int cae_sincos_table(float *table, size_t G, size_t C)
{
    const size_t f = C / 4;

    if (C % 4 != 0) {
        cae_errorf("cae_sincos_table: width %zu is not a multiple of 4", C);
        return -1;
    }
    for (size_t c = 0; c < C; ++c)
        table[c] = 0.0f;
    for (size_t n = 0; n < G * G; ++n) {
        float *row = table + (n + 1) * C;
        /* the first half carries the grid row, the second the column */
        const double r = (double)(n / G), col = (double)(n % G);

        for (size_t j = 0; j < f; ++j) {
            const double w = 1.0 / pow(10000.0, (double)j / (double)f);

            row[j] = (float)sin(r * w);
            row[f + j] = (float)cos(r * w);
            row[2 * f + j] = (float)sin(col * w);
            row[3 * f + j] = (float)cos(col * w);
        }
    }
    return 0;
}
