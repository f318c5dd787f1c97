// The CUDA build path, end to end on a GPU: the trivial kernel of src/tensor/cuda/device.cu
// runs and its output equals the CPU's. Run by `make test-cuda` on the GPU machine only.
#include <stdlib.h>

#include "check.h"
#include "tensor/cuda.h"

int main(void)
{
    int n_dev = tw_cuda_device_count();
    REQUIRE(n_dev > 0);
    char name[256];
    CHECK_OK(tw_cuda_device_name(0, name, sizeof name));
    printf("device 0: %s\n", name);
    // Sizes that are not multiples of the block, and one of several blocks.
    size_t sizes[] = { 1, 255, 257, 100003 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *out = calloc(n, sizeof *out);
        REQUIRE(out);
        CHECK_OK(tw_cuda_fill_ramp(out, 0.5f, n));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += out[i] != 0.5f * (float)i;
        CHECK_EQ_INT(bad, 0);
        free(out);
    }
    return check_report("cuda_fill");
}
