/* Classifies the Fashion-MNIST test set with an MLP compiled ahead of time
 * by kiln, and prints the test accuracy.
 *
 *   kiln train examples/mlp.kiln --data DATA --save mlp.safetensors
 *   kiln build examples/mlp.kiln --fn forward --params mlp.safetensors --bind N=1000 -o build
 *   cc -O2 -I build examples/c/classify.c build/libmlp.a -lm -lpthread -o classify
 *   ./classify DATA
 *
 * DATA holds t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz; they
 * are read through `gzip -dc`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

/* Reads the gzip-compressed IDX file DIR/NAME whole; sets *size. */
static unsigned char *read_gz(const char *dir, const char *name, size_t *size) {
    char command[4096];
    snprintf(command, sizeof command, "gzip -dc '%s/%s'", dir, name);
    FILE *f = popen(command, "r");
    if (!f) return NULL;
    size_t capacity = 1 << 20, used = 0;
    unsigned char *data = malloc(capacity);
    size_t n;
    while (data && (n = fread(data + used, 1, capacity - used, f)) > 0) {
        used += n;
        if (used == capacity) data = realloc(data, capacity *= 2);
    }
    if (pclose(f) != 0 || !data) {
        free(data);
        return NULL;
    }
    *size = used;
    return data;
}

static uint32_t big_endian(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    size_t image_bytes, label_bytes;
    unsigned char *images = read_gz(argv[1], "t10k-images-idx3-ubyte.gz", &image_bytes);
    unsigned char *labels = read_gz(argv[1], "t10k-labels-idx1-ubyte.gz", &label_bytes);
    if (!images || !labels || image_bytes < 16 || label_bytes < 8 || big_endian(images) != 0x803 ||
        big_endian(labels) != 0x801) {
        fprintf(stderr, "error: cannot read the Fashion-MNIST test set in %s\n", argv[1]);
        return 1;
    }
    size_t count = big_endian(images + 4);
    size_t pixels = (size_t)big_endian(images + 8) * big_endian(images + 12);
    if (pixels != 784 || big_endian(labels + 4) != count || image_bytes != 16 + count * pixels ||
        label_bytes != 8 + count) {
        fprintf(stderr, "error: the test set in %s is not 28x28 images with one label each\n", argv[1]);
        return 1;
    }
    enum { BATCH = MLP_FORWARD_MAX_N };
    float *x = malloc(sizeof(float) * BATCH * 784), *logits = malloc(sizeof(float) * BATCH * 10);
    size_t correct = 0;
    for (size_t start = 0; start < count; start += BATCH) {
        size_t n = count - start < BATCH ? count - start : BATCH;
        for (size_t i = 0; i < n * 784; i++) x[i] = images[16 + start * 784 + i] / 255.0f;
        int32_t status = mlp_forward(x, (int64_t)n, logits);
        if (status != MLP_OK) {
            fprintf(stderr, "error: mlp_forward returned %d\n", status);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            int best = 0;
            for (int c = 1; c < 10; c++)
                if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
            correct += best == labels[8 + start + i];
        }
    }
    printf("%zu test images, test accuracy %.4f\n", count, (double)correct / count);
    free(x);
    free(logits);
    free(images);
    free(labels);
    return 0;
}
