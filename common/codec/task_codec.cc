#include "common/codec/task_codec.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"

namespace fedsim {

void EncodeTask(const Task& task, v1::Task& out) {
  out.set_task_id(static_cast<std::uint64_t>(task.id.value));
  out.set_round(task.round);
  out.set_client_id(task.client.value);
  out.set_parameters(EncodeFlat(*task.params));
  auto* local = out.mutable_local();
  local->set_epochs(task.local.epochs);
  local->set_batch_size(task.local.batch_size);
  local->set_lr(task.local.lr);
  local->set_max_steps(task.local.max_steps);
  local->set_momentum(task.local.momentum);
  local->set_fresh_batches(task.local.fresh_batches);
  local->set_grad_clip_norm(task.local.grad_clip_norm);
}

absl::StatusOr<Task> DecodeTask(const v1::Task& msg, std::int64_t dim) {
  Task t;
  t.id = TaskId(static_cast<std::int64_t>(msg.task_id()));
  t.round = msg.round();
  t.client = ClientId(msg.client_id());
  FEDSIM_ASSIGN_OR_RETURN(
      FlatVector params,
      DecodeFlat(msg.parameters(), dim,
                 absl::StrCat("task ", msg.task_id(), " parameters")));
  t.params = std::make_shared<const FlatVector>(std::move(params));
  t.local.epochs = msg.local().epochs();
  t.local.batch_size = msg.local().batch_size();
  t.local.lr = msg.local().lr();
  t.local.max_steps = msg.local().max_steps();
  t.local.momentum = msg.local().momentum();
  t.local.fresh_batches = msg.local().fresh_batches();
  t.local.grad_clip_norm = msg.local().grad_clip_norm();
  return t;
}

void EncodeResult(const ClientResult& r, v1::Result& out) {
  out.set_task_id(static_cast<std::uint64_t>(r.task.value));
  out.set_client_id(r.client.value);
  out.set_update(EncodeFlat(r.update));
  out.set_num_examples(r.num_examples);
  out.set_num_steps(r.num_steps);
  out.set_train_loss(r.train_loss);
}

absl::StatusOr<ClientResult> DecodeResult(const v1::Result& msg,
                                          std::int64_t dim) {
  ClientResult r;
  r.task = TaskId(static_cast<std::int64_t>(msg.task_id()));
  r.client = ClientId(msg.client_id());
  FEDSIM_ASSIGN_OR_RETURN(
      r.update, DecodeFlat(msg.update(), dim,
                           absl::StrCat("result of task ", msg.task_id(),
                                        ", client ", msg.client_id(), ": update")));
  r.num_examples = msg.num_examples();
  r.num_steps = msg.num_steps();
  r.train_loss = msg.train_loss();
  return r;
}

}  // namespace fedsim
