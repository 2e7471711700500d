// CfpipeMfAdagradStep: one training step of `dot` or `biased-mf` with cfpipe's
// row-wise Adagrad (cflib/train/optim.py, SparseAdagrad), fused and multi-threaded.
//
// It makes the same update as cflib.train.rowstep's TensorFlow step, from the same
// gradients (cflib/models/dot.py and biased_mf.py, `row_gradients`):
//
//   pred_j = mu + b_u + b_i + p_u . q_i         (biases only with has_bias)
//   e_j    = pred_j - r_j
//   g(p)_j = 2 (e_j q_i + l2_user p_u), g(q)_j = 2 (e_j p_u + l2_item q_i),
//   g(b)_j = 2 (e_j + l2_bias b)                 (per lookup, all from the old rows)
//   acc[r] += sum over lookups j of r of mean(g_j ** 2)
//   row[r] -= lr * sum_j g_j / sqrt(acc[r] + epsilon)
//
// Three passes over the batch: (A) scores and per-lookup gradients, shared out over
// the CPU device's intra-op threads by lookup; (B) each thread adds to the
// accumulators of the rows it owns (row id modulo the thread count), then (C) updates
// those rows. A row has one owner, so no two threads write one row and no lock is
// taken per row: the result is the TensorFlow step's up to the order of float sums.
//
// Outputs: the predictions (before the update) and the batch's weighted L2 penalty
// (the sum over tables of l2 * mean over the batch of |row|^2), which the trainer adds
// to the mean squared error for the loss, as Keras would.

#include "fused.h"

namespace cfpipe {

REGISTER_OP("CfpipeMfAdagradStep")
    .Input("tables: num_tables * resource")
    .Input("accumulators: num_tables * resource")
    .Input("users: int32")
    .Input("items: int32")
    .Input("ratings: float")
    .Input("learning_rate: float")
    .Output("predictions: float")
    .Output("penalty: float")
    .Attr("num_tables: int >= 2")
    .Attr("l2: list(float)")
    .Attr("global_mean: float = 0.0")
    .Attr("epsilon: float = 1e-8")
    .Attr("threads: int = 0")
    .SetIsStateful()
    .SetShapeFn(StepShape<0>);

namespace {

class MfAdagradStepOp : public OpKernel {
 public:
  MfAdagradStepOp(OpKernelConstruction* ctx, bool implicit)
      : OpKernel(ctx), implicit_(implicit) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_tables", &num_tables_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("l2", &l2_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("global_mean", &global_mean_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("threads", &threads_));
    OP_REQUIRES(ctx, implicit_ ? num_tables_ == 5 : (num_tables_ == 2 || num_tables_ == 4),
                errors::InvalidArgument("num_tables is 2 (factors), 4 (factors and "
                                        "biases) or 5 (svdpp), not ", num_tables_));
    OP_REQUIRES(ctx, static_cast<int>(l2_.size()) == num_tables_,
                errors::InvalidArgument("l2 has ", l2_.size(), " values for ",
                                        num_tables_, " tables"));
  }

  void Compute(OpKernelContext* ctx) override {
    const int n_all = num_tables_;
    const int n = implicit_ ? 4 : n_all;  // the tables looked up once per rating
    std::vector<tsl::core::RefCountPtr<Var>> vars(2 * n_all);
    for (int i = 0; i < 2 * n_all; ++i) {
      OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, i), &vars[i]));
    }
    // Lock every variable, in address order (no deadlock with another step).
    std::vector<Var*> order;
    for (auto& v : vars) order.push_back(v.get());
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    OP_REQUIRES(ctx, static_cast<int>(order.size()) == 2 * n_all,
                errors::InvalidArgument("the same variable is passed twice"));
    std::vector<std::unique_ptr<tensorflow::mutex_lock>> locks;
    for (Var* v : order) locks.emplace_back(new tensorflow::mutex_lock{*v->mu()});
    for (Var* v : order) OP_REQUIRES_OK(ctx, Exclusive(ctx, v));

    std::vector<Table> tables(n_all);
    for (int i = 0; i < n_all; ++i) {
      Tensor* rows = vars[i]->tensor();
      Tensor* acc = vars[n_all + i]->tensor();
      Table& t = tables[i];
      t.rows = rows->flat<float>().data();
      t.acc = acc->flat<float>().data();
      t.n_rows = rows->dim_size(0);
      t.width = rows->dim_size(1);
      t.l2 = l2_[i];
      OP_REQUIRES(ctx, acc->dim_size(0) == t.n_rows && acc->dim_size(1) == 1,
                  errors::InvalidArgument("accumulator ", i, " has shape ",
                                          acc->shape().DebugString(), ", not [",
                                          t.n_rows, ", 1]"));
    }
    const int64_t dim = tables[0].width;
    OP_REQUIRES(ctx, tables[1].width == dim,
                errors::InvalidArgument("user and item factors differ in width: ", dim,
                                        " and ", tables[1].width));
    OP_REQUIRES(ctx, tables[1].n_rows > 0 && tables[0].n_rows > 0,
                errors::InvalidArgument("an empty table"));
    const bool bias = n == 4;
    if (implicit_) {
      OP_REQUIRES(ctx, tables[4].width == dim && tables[4].n_rows == tables[1].n_rows,
                  errors::InvalidArgument("the implicit table must be [items, dim]"));
    }
    if (bias) {
      OP_REQUIRES(ctx, tables[2].width == 1 && tables[3].width == 1 &&
                           tables[2].n_rows == tables[0].n_rows &&
                           tables[3].n_rows == tables[1].n_rows,
                  errors::InvalidArgument("bias tables must be [users, 1] and [items, 1]"));
    }

    const int base = 2 * n_all + (implicit_ ? 2 : 0);
    const Tensor& users_t = ctx->input(base);
    const Tensor& items_t = ctx->input(base + 1);
    const Tensor& ratings_t = ctx->input(base + 2);
    const Tensor& lr_t = ctx->input(base + 3);
    OP_REQUIRES(ctx, users_t.dims() == 1 && items_t.dims() == 1 && ratings_t.dims() == 1,
                errors::InvalidArgument("users, items and ratings must be vectors"));
    const int64_t batch = users_t.dim_size(0);
    OP_REQUIRES(ctx, batch < (int64_t{1} << 31),
                errors::InvalidArgument("a batch of ", batch, " is over 2^31 lookups"));
    OP_REQUIRES(ctx, items_t.dim_size(0) == batch && ratings_t.dim_size(0) == batch,
                errors::InvalidArgument("users, items and ratings differ in length"));
    OP_REQUIRES(ctx, tensorflow::TensorShapeUtils::IsScalar(lr_t.shape()),
                errors::InvalidArgument("learning_rate must be a scalar"));
    const int32_t* users = users_t.flat<int32_t>().data();
    const int32_t* items = items_t.flat<int32_t>().data();
    const float* ratings = ratings_t.flat<float>().data();
    const float lr = lr_t.scalar<float>()();

    Tensor* pred_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, users_t.shape(), &pred_t));
    Tensor* penalty_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {}, &penalty_t));
    float* pred = pred_t->flat<float>().data();
    if (batch == 0) {
      penalty_t->scalar<float>()() = 0.0f;
      return;
    }

    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const int n_threads = std::max(1, threads_ > 0 ? threads_ : pool->NumThreads());

    // Scratch kept from step to step (a fresh buffer of this size every step costs the
    // kernel's page faults): per lookup the factor gradients of both sides, per table
    // the squared mean (for the accumulator) and, for the biases, the gradient itself;
    // and per thread of pass A the lookups whose user or item each thread owns.
    tensorflow::mutex_lock scratch_lock{scratch_mu_};
    grad_.resize(2 * batch * dim);
    scal_.resize(batch * 2 * n);
    owned_.resize(n_threads * n_threads * 2);
    float* grad = grad_.data();  // [batch][2][dim]
    float* scal = scal_.data();  // [batch][n squares, n - 2 bias grads]
    std::vector<double> penalty(n_threads, 0.0);
    std::atomic<int64_t> bad(-1);
    const Table& P = tables[0];
    const Table& Q = tables[1];
    const float mu = global_mean_;

    // svdpp: the batch's users (segments), z_u and mean |y_j|^2 of each; per thread of
    // pass A the sums of e q_i over each segment's ratings.
    const int64_t* offsets = nullptr;
    const int32_t* implicit_items = nullptr;
    int64_t n_seg = 0;
    float* z = nullptr;
    if (implicit_) {
      const Tensor& offsets_t = ctx->input(2 * n_all);
      const Tensor& items_csr_t = ctx->input(2 * n_all + 1);
      OP_REQUIRES(ctx, offsets_t.dims() == 1 && offsets_t.dim_size(0) == P.n_rows + 1,
                  errors::InvalidArgument("offsets must be [users + 1]"));
      offsets = offsets_t.flat<int64_t>().data();
      implicit_items = items_csr_t.flat<int32_t>().data();
      OP_REQUIRES(ctx, offsets[P.n_rows] == items_csr_t.NumElements(),
                  errors::InvalidArgument("offsets do not end at the pairs' count"));
      im_.offsets = offsets;
      im_.items = implicit_items;
      const int64_t bad_pair =
          im_.Prepare(pool, n_threads, users, batch, P.n_rows, tables[4], dim);
      n_seg = im_.n_seg;
      z = im_.z.data();
      OP_REQUIRES(ctx, bad_pair < 0,
                  errors::InvalidArgument("N(u) pair ", bad_pair,
                                          " names an item outside the tables"));
    }

    // (A) scores and gradients, from the rows as they are before any update.
    RunThreads(pool, n_threads, [&](int t) {
      const int64_t begin = batch * t / n_threads, end = batch * (t + 1) / n_threads;
      double pen = 0.0;
      std::vector<int32_t>* owned = &owned_[t * n_threads * 2];  // [owner][side]
      for (int o = 0; o < 2 * n_threads; ++o) owned[o].clear();
      for (int64_t j = begin; j < end; ++j) {
        const int64_t u = users[j], i = items[j];
        if (u < 0 || u >= P.n_rows || i < 0 || i >= Q.n_rows) {
          bad.store(j);
          pred[j] = 0.0f;
          continue;
        }
        owned[(u % n_threads) * 2].push_back(static_cast<int32_t>(j));
        owned[(i % n_threads) * 2 + 1].push_back(static_cast<int32_t>(j));
        if (j + 8 < end) {
          const int64_t nu = users[j + 8];
          if (nu >= 0 && nu < P.n_rows) __builtin_prefetch(P.rows + nu * dim);
        }
        const float* p = P.rows + u * dim;
        const float* q = Q.rows + i * dim;
        float dot = 0.0f, pp = 0.0f, qq = 0.0f;
        for (int64_t k = 0; k < dim; ++k) {
          dot += p[k] * q[k];
          pp += p[k] * p[k];
          qq += q[k] * q[k];
        }
        const float* zu = implicit_ ? z + im_.seg[j] * dim : nullptr;
        if (zu != nullptr) {
          for (int64_t k = 0; k < dim; ++k) dot += zu[k] * q[k];
          pen += static_cast<double>(tables[4].l2) * im_.seg_sq[im_.seg[j]];
        }
        float bu = 0.0f, bi = 0.0f;
        if (bias) {
          bu = tables[2].rows[u];
          bi = tables[3].rows[i];
        }
        const float y = mu + bu + bi + dot;
        pred[j] = y;
        const float e = y - ratings[j];
        float* gp = grad + 2 * j * dim;
        float* gq = gp + dim;
        float sp = 0.0f, sq = 0.0f;
        for (int64_t k = 0; k < dim; ++k) {
          const float user = zu != nullptr ? p[k] + zu[k] : p[k];
          gp[k] = 2.0f * (e * q[k] + P.l2 * p[k]);
          gq[k] = 2.0f * (e * user + Q.l2 * q[k]);
          sp += gp[k] * gp[k];
          sq += gq[k] * gq[k];
        }
        if (zu != nullptr) {
          float* sum = im_.sums.data() + (t * n_seg + im_.seg[j]) * dim;
          for (int64_t k = 0; k < dim; ++k) sum[k] += e * q[k];
        }
        float* s = scal + j * 2 * n;
        s[0] = sp / static_cast<float>(dim);
        s[1] = sq / static_cast<float>(dim);
        pen += static_cast<double>(P.l2) * pp + static_cast<double>(Q.l2) * qq;
        if (bias) {
          const float gbu = 2.0f * (e + tables[2].l2 * bu);
          const float gbi = 2.0f * (e + tables[3].l2 * bi);
          s[2] = gbu * gbu;
          s[3] = gbi * gbi;
          s[4] = gbu;
          s[5] = gbi;
          pen += static_cast<double>(tables[2].l2) * bu * bu +
                 static_cast<double>(tables[3].l2) * bi * bi;
        }
      }
      penalty[t] = pen;
    });
    const int64_t at = bad.load();
    OP_REQUIRES(ctx, at < 0,
                errors::InvalidArgument("lookup ", at, " of the batch: user ", users[at],
                                        " or item ", items[at], " is outside the tables (",
                                        P.n_rows, " users, ", Q.n_rows, " items)"));

    // (B, C) each thread: the accumulators, then the rows, of the rows it owns.
    const float eps = epsilon_;
    RunThreads(pool, n_threads, [&](int t) {
      for (int side = 0; side < 2; ++side) {
        const int32_t* ids = side == 0 ? users : items;
        Table& f = tables[side];
        Table* b = bias ? &tables[2 + side] : nullptr;
        // The lookups of rows this thread owns, in batch order.
        for (int from = 0; from < n_threads; ++from) {
          for (const int32_t j : owned_[(from * n_threads + t) * 2 + side]) {
            const int64_t r = ids[j];
            const float* s = scal + j * 2 * n;
            f.acc[r] += s[side];
            if (b != nullptr) b->acc[r] += s[2 + side];
          }
        }
        for (int from = 0; from < n_threads; ++from) {
          for (const int32_t j : owned_[(from * n_threads + t) * 2 + side]) {
            const int64_t r = ids[j];
            const float* g = grad + (2 * j + side) * dim;
            float* row = f.rows + r * dim;
            const float step = lr / std::sqrt(f.acc[r] + eps);
            for (int64_t k = 0; k < dim; ++k) row[k] -= step * g[k];
            if (b != nullptr) {
              b->rows[r] -= lr * scal[j * 2 * n + 4 + side] / std::sqrt(b->acc[r] + eps);
            }
          }
        }
      }
    });

    if (implicit_) im_.Update(pool, n_threads, tables[4], batch, dim, lr, eps);

    double total = 0.0;
    for (double p : penalty) total += p;
    penalty_t->scalar<float>()() = static_cast<float>(total / static_cast<double>(batch));
  }

 private:
  bool implicit_ = false;
  int num_tables_ = 0;
  std::vector<float> l2_;
  float global_mean_ = 0.0f;
  float epsilon_ = 1e-8f;
  int threads_ = 0;
  tensorflow::mutex scratch_mu_;
  std::vector<float> grad_, scal_;
  std::vector<std::vector<int32_t>> owned_;
  Implicit im_;  // svdpp's work on N(u) (svdpp.cc)
};

class MfStepOp : public MfAdagradStepOp {
 public:
  explicit MfStepOp(OpKernelConstruction* ctx) : MfAdagradStepOp(ctx, false) {}
};

class SvdppStepOp : public MfAdagradStepOp {
 public:
  explicit SvdppStepOp(OpKernelConstruction* ctx) : MfAdagradStepOp(ctx, true) {}
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("CfpipeMfAdagradStep").Device(tensorflow::DEVICE_CPU),
                        MfStepOp);
REGISTER_KERNEL_BUILDER(Name("CfpipeSvdppAdagradStep").Device(tensorflow::DEVICE_CPU),
                        SvdppStepOp);

}  // namespace cfpipe
