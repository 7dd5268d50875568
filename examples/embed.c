/* examples/embed.c — using libpeftlua from C, without Lua.
 *
 *   cc embed.c $(pkg-config --cflags --libs peftlua) -o embed && ./embed
 *
 * Builds two tensors, multiplies them through OpenBLAS, converts one to NF4 and back, and
 * prints what the counting allocator saw.
 */
#include <stdio.h>
#include <peftlua/quant.h>
#include <peftlua/tensor.h>

int main(void)
{
    int64_t sa[2] = { 2, 64 }, sb[2] = { 64, 2 };
    struct pl_tensor *a = pl_tensor_new(PL_F32, 2, sa, PL_MEM_WORKSPACE);
    struct pl_tensor *b = pl_tensor_new(PL_F32, 2, sb, PL_MEM_WORKSPACE);
    if (!a || !b) { fprintf(stderr, "embed: %s\n", pl_last_error()); return 1; }
    pl_tensor_fill(a, 0.5);
    pl_tensor_fill(b, 2.0);
    struct pl_tensor *c = pl_tensor_matmul(a, b);
    struct pl_tensor *q = pl_tensor_convert(a, PL_NF4, PL_MEM_WEIGHTS);
    if (!c || !q) { fprintf(stderr, "embed: %s\n", pl_last_error()); return 1; }
    int64_t i00[2] = { 0, 0 };
    printf("c[0][0] = %g (expect 64)\n", pl_tensor_get(c, i00));
    printf("nf4 bytes = %zu for 128 values\n", pl_tensor_nbytes(q));
    printf("peak tracked bytes = %lld\n", (long long)pl_mem_peak_total());
    pl_tensor_release(q);
    pl_tensor_release(c);
    pl_tensor_release(b);
    pl_tensor_release(a);
    return pl_mem_current_total() == 0 ? 0 : 1;
}
