// What the fused training ops share (mf_adagrad.cc, svdpp.cc): the thread helper, the
// variables' exclusive buffers, a table's view, and svdpp's per-batch N(u) work.
#ifndef CFPIPE_FUSED_H_
#define CFPIPE_FUSED_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace cfpipe {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::Var;
namespace errors = tensorflow::errors;

// `padded_size` of cflib/models/svdpp.py: n rounded up to one of 4 sizes per octave.
inline int64_t PaddedSize(int64_t n) {
  n = std::max<int64_t>(n, 1);
  const int64_t octave =
      static_cast<int64_t>(std::floor(std::log(static_cast<double>(n)) / std::log(2.0)));
  const int64_t quantum = int64_t{1} << std::max<int64_t>(octave - 2, 0);
  return (n + quantum - 1) / quantum * quantum;
}

// Run fn(t) for t in [0, n): n - 1 on the pool, the last on this thread.
template <typename Fn>
void RunThreads(tsl::thread::ThreadPool* pool, int n, const Fn& fn) {
  absl::BlockingCounter done(n - 1);
  for (int t = 0; t < n - 1; ++t) {
    pool->Schedule([&fn, &done, t] {
      fn(t);
      done.DecrementCount();
    });
  }
  fn(n - 1);
  done.Wait();
}

// The variable's buffer, owned by it alone: a buffer shared with a tensor read from
// the variable is copied first (as TensorFlow's own sparse training ops do), and later
// dense reads copy rather than share it, so an update never shows through a value read
// earlier.
inline absl::Status Exclusive(OpKernelContext* ctx, Var* var) {
  Tensor* t = var->tensor();
  if (t->dtype() != tensorflow::DT_FLOAT || t->dims() != 2) {
    return errors::InvalidArgument("CfpipeMfAdagradStep: a table or accumulator is not a "
                                   "2-D float32 variable: ", t->DebugString());
  }
  if (!t->RefCountIsOne()) {
    Tensor copy;
    tensorflow::AllocatorAttributes attr;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(t->dtype(), t->shape(), &copy, attr));
    std::memcpy(copy.flat<float>().data(), t->flat<float>().data(),
                sizeof(float) * t->NumElements());
    *t = copy;
  }
  var->copy_on_read_mode.store(true);
  return absl::OkStatus();
}

struct Table {
  float* rows = nullptr;
  float* acc = nullptr;
  int64_t n_rows = 0;
  int64_t width = 0;
  float l2 = 0.0f;
};

// The steps' output shapes: the predictions as the users input (after the tables, their
// accumulators and kExtra other inputs), and the penalty a scalar.
template <int kExtra>
absl::Status StepShape(tensorflow::shape_inference::InferenceContext* c) {
  int n = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("num_tables", &n));
  c->set_output(0, c->input(2 * n + kExtra));
  c->set_output(1, c->Scalar());
  return absl::OkStatus();
}

// svdpp's per-batch work on N(u) (svdpp.cc), with its scratch kept from step to step.
struct Implicit {
  const int64_t* offsets = nullptr;  // N(u) as CSR
  const int32_t* items = nullptr;
  int64_t n_seg = 0;                 // the batch's users ("segments")
  std::vector<int32_t> seg, seg_users, seg_rows;  // per lookup; per segment: user, ratings
  std::unordered_map<int32_t, int32_t> seg_index;
  std::vector<float> z, seg_sq;      // per segment: z_u, mean |y_j|^2 over N(u)
  std::vector<float> sums;           // per thread of pass A and segment: sum of e q_i
  std::vector<float> y_grad;         // per row of Y: its summed gradient (zero between steps)
  std::vector<uint8_t> y_touched;

  // The batch's segments, z_u and mean |y|^2 of each; the sums zeroed. Returns the
  // position of an N(u) item outside Y, or -1.
  int64_t Prepare(tsl::thread::ThreadPool* pool, int n_threads, const int32_t* users,
                  int64_t batch, int64_t n_users, const Table& Y, int64_t dim);
  // Y's row-wise Adagrad from the sums of pass A (see svdpp.cc).
  void Update(tsl::thread::ThreadPool* pool, int n_threads, Table& Y, int64_t batch,
              int64_t dim, float lr, float eps);
};

}  // namespace cfpipe

#endif  // CFPIPE_FUSED_H_
