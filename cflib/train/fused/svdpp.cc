// CfpipeSvdppAdagradStep: the step of mf_adagrad.cc for `svdpp` (cflib/models/svdpp.py),
// and its work on N(u): z_u of each user of the batch, and the implicit table Y's update.

#include "fused.h"

namespace cfpipe {

// The same step for `svdpp` (cflib/models/svdpp.py): tables P, Q, b_u, b_i and the
// implicit item table Y; N(u) as CSR (offsets [users + 1], implicit_items). The user
// vector is p_u + z_u, z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j, computed once per user of
// the batch; Y's gradient per (user of the batch, j in N(u)) lookup is Keras' step's
// (the L2 term l2_item * mean |y_j|^2 over N(u) per rating included), scaled by the
// lookups' count padded as `padded_size` pads it, as `SparseAdagrad` scales it.
REGISTER_OP("CfpipeSvdppAdagradStep")
    .Input("tables: num_tables * resource")
    .Input("accumulators: num_tables * resource")
    .Input("offsets: int64")
    .Input("implicit_items: int32")
    .Input("users: int32")
    .Input("items: int32")
    .Input("ratings: float")
    .Input("learning_rate: float")
    .Output("predictions: float")
    .Output("penalty: float")
    .Attr("num_tables: int = 5")
    .Attr("l2: list(float)")
    .Attr("global_mean: float = 0.0")
    .Attr("epsilon: float = 1e-8")
    .Attr("threads: int = 0")
    .SetIsStateful()
    .SetShapeFn(StepShape<2>);

int64_t Implicit::Prepare(tsl::thread::ThreadPool* pool, int n_threads, const int32_t* users,
                          int64_t batch, int64_t n_users, const Table& Y, int64_t dim) {
  seg.resize(batch);
  seg_users.clear();
  seg_index.clear();
  for (int64_t j = 0; j < batch; ++j) {
    const int32_t u = users[j];
    if (u < 0 || u >= n_users) {
      seg[j] = 0;
      continue;  // pass A reports it
    }
    auto found = seg_index.emplace(u, static_cast<int32_t>(seg_users.size()));
    if (found.second) seg_users.push_back(u);
    seg[j] = found.first->second;
  }
  n_seg = static_cast<int64_t>(seg_users.size());
  seg_rows.assign(n_seg, 0);
  for (int64_t j = 0; j < batch; ++j) {
    if (users[j] >= 0 && users[j] < n_users) ++seg_rows[seg[j]];
  }
  z.resize(std::max<int64_t>(n_seg, 1) * dim);
  seg_sq.resize(std::max<int64_t>(n_seg, 1));
  sums.assign(n_threads * std::max<int64_t>(n_seg, 1) * dim, 0.0f);
  float* zdata = z.data();
  std::atomic<int64_t> bad_pair(-1);
  RunThreads(pool, n_threads, [&](int t) {
    for (int64_t s = n_seg * t / n_threads; s < n_seg * (t + 1) / n_threads; ++s) {
      const int64_t u = seg_users[s];
      const int64_t begin = offsets[u], end = offsets[u + 1];
      float* zs = zdata + s * dim;
      std::fill(zs, zs + dim, 0.0f);
      float square = 0.0f;
      for (int64_t pos = begin; pos < end; ++pos) {
        const int64_t j = items[pos];
        if (j < 0 || j >= Y.n_rows) {
          bad_pair.store(pos);
          continue;
        }
        const float* y = Y.rows + j * dim;
        for (int64_t k = 0; k < dim; ++k) {
          zs[k] += y[k];
          square += y[k] * y[k];
        }
      }
      const float count = static_cast<float>(std::max<int64_t>(end - begin, 1));
      const float scale = 1.0f / std::sqrt(count);
      for (int64_t k = 0; k < dim; ++k) zs[k] *= scale;
      seg_sq[s] = square / count;
    }
  });
  return bad_pair.load();
}

void Implicit::Update(tsl::thread::ThreadPool* pool, int n_threads, Table& Y, int64_t batch,
                    int64_t dim, float lr, float eps) {
  int64_t lookups = 0;
  for (int64_t s = 0; s < n_seg; ++s) {
    lookups += offsets[seg_users[s] + 1] - offsets[seg_users[s]];
  }
  const float scale = static_cast<float>(PaddedSize(lookups)) / static_cast<float>(batch);
  for (int t = 1; t < n_threads; ++t) {  // E_s: the threads' sums, into thread 0's
    for (int64_t x = 0; x < n_seg * dim; ++x) sums[x] += sums[t * n_seg * dim + x];
  }
  y_grad.resize(Y.n_rows * dim, 0.0f);  // zero between steps
  y_touched.resize(Y.n_rows, 0);
  const float l2 = Y.l2;
  RunThreads(pool, n_threads, [&](int t) {
    std::vector<int32_t> mine;
    std::vector<float> g(dim);
    for (int64_t s = 0; s < n_seg; ++s) {
      const int64_t u = seg_users[s];
      const int64_t begin = offsets[u], end = offsets[u + 1];
      const float count = static_cast<float>(std::max<int64_t>(end - begin, 1));
      const float from_sum = scale * 2.0f / std::sqrt(count);
      const float from_l2 = scale * 2.0f * l2 * static_cast<float>(seg_rows[s]) / count;
      const float* sum = sums.data() + s * dim;
      for (int64_t pos = begin; pos < end; ++pos) {
        const int64_t j = items[pos];
        if (j % n_threads != t) continue;
        const float* y = Y.rows + j * dim;
        float* acc_g = y_grad.data() + j * dim;
        float square = 0.0f;
        for (int64_t k = 0; k < dim; ++k) {
          g[k] = from_sum * sum[k] + from_l2 * y[k];
          square += g[k] * g[k];
          acc_g[k] += g[k];
        }
        Y.acc[j] += square / static_cast<float>(dim);
        if (!y_touched[j]) {
          y_touched[j] = 1;
          mine.push_back(static_cast<int32_t>(j));
        }
      }
    }
    for (const int32_t j : mine) {
      float* y = Y.rows + int64_t{j} * dim;
      float* acc_g = y_grad.data() + int64_t{j} * dim;
      const float step = lr / std::sqrt(Y.acc[j] + eps);
      for (int64_t k = 0; k < dim; ++k) {
        y[k] -= step * acc_g[k];
        acc_g[k] = 0.0f;
      }
      y_touched[j] = 0;
    }
  });
}

}  // namespace cfpipe
