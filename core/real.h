/* real.h - the element type of parameters and activations on the CPU.
 *
 * The product is built with `real` = float. The gradient-check tests build
 * the same model and CPU backend sources a second time with
 * -DPRESIGHT_REAL_DOUBLE so that finite differences of the *same code* can be
 * taken in double precision. Nothing outside core/model.c, core/backend_cpu.c
 * and core/blas.c needs to care which one it is. */
#ifndef PRESIGHT_REAL_H
#define PRESIGHT_REAL_H

#ifdef PRESIGHT_REAL_DOUBLE
typedef double real;
#define REAL_IS_DOUBLE 1
#else
typedef float real;
#define REAL_IS_DOUBLE 0
#endif

#endif
