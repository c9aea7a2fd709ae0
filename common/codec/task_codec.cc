#include "common/codec/task_codec.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"

namespace fedsim {

std::shared_ptr<const FlatVector> WireServerControl(const Task& task) {
  if (task.scaffold.has_value()) return task.scaffold->server_control;
  if (task.scafflsa.has_value()) return task.scafflsa->anchor;
  return nullptr;
}

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
  out.set_prox_mu(task.local.prox_mu);
  // The wire's server_control is SCAFFOLD's c (with scaffold_option) or
  // SCAFFLSA's anchor (without, with anchor_round).
  if (task.scaffold.has_value()) {
    out.set_server_control(EncodeFlat(*task.scaffold->server_control));
    out.set_scaffold_option(static_cast<std::int32_t>(task.scaffold->option));
  } else if (task.scafflsa.has_value()) {
    out.set_server_control(EncodeFlat(*task.scafflsa->anchor));
    out.set_anchor_round(task.scafflsa->anchor_round);
  }
  local->set_momentum(task.local.momentum);
  local->set_fresh_batches(task.local.fresh_batches);
  local->set_grad_clip_norm(task.local.grad_clip_norm);
  if (task.client_state != nullptr) {
    EncodeClientState(*task.client_state, *out.mutable_client_state());
  }
}

void EncodeClientState(const ClientState& state, v1::ClientStateBlob& out) {
  out.Clear();
  for (const auto& [name, v] : state.vectors) {
    v1::NamedVector* nv = out.add_vectors();
    nv->set_name(name);
    nv->set_values(EncodeFlat(v));
  }
}

absl::StatusOr<ClientState> DecodeClientState(const v1::ClientStateBlob& msg,
                                              absl::string_view what) {
  ClientState state;
  for (const v1::NamedVector& nv : msg.vectors()) {
    if (nv.values().size() % sizeof(double) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": client_state vector '", nv.name(), "' has ", nv.values().size(),
          " bytes; must be a multiple of 8 (float64 values)"));
    }
    if (state.Has(nv.name())) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": client_state vector '", nv.name(), "' appears twice; names are unique"));
    }
    FEDSIM_ASSIGN_OR_RETURN(
        state.vectors[nv.name()],
        DecodeFlat(nv.values(),
                   static_cast<std::int64_t>(nv.values().size() / sizeof(double)),
                   absl::StrCat(what, ": client_state vector '", nv.name(), "'")));
  }
  return state;
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
  t.local.prox_mu = msg.prox_mu();
  std::shared_ptr<const FlatVector> control;
  if (!msg.server_control().empty()) {
    FEDSIM_ASSIGN_OR_RETURN(
        FlatVector values,
        DecodeFlat(msg.server_control(), dim,
                   absl::StrCat("task ", msg.task_id(), " server_control")));
    control = std::make_shared<const FlatVector>(std::move(values));
  }
  // SCAFFOLD sends c with every task (server_control with scaffold_option);
  // SCAFFLSA sends an anchor (server_control without scaffold_option) with
  // the round it closed.
  switch (msg.scaffold_option()) {
    case 0:
      break;
    case 1:
    case 2:
      if (control == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "task ", msg.task_id(), ": scaffold_option = ", msg.scaffold_option(),
            " without server_control; SCAFFOLD sends c with every task"));
      }
      t.scaffold = ScaffoldTaskFields{
          control, msg.scaffold_option() == 1 ? ScaffoldOption::kOptionI
                                              : ScaffoldOption::kOptionII};
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("task ", msg.task_id(), ": scaffold_option = ",
                       msg.scaffold_option(), "; must be 0, 1 or 2"));
  }
  if (control != nullptr && !t.scaffold.has_value()) {
    if (msg.anchor_round() < 0 || msg.anchor_round() >= msg.round()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", msg.task_id(), ": anchor_round = ", msg.anchor_round(),
          "; an anchor closes an earlier round, in [0, ", msg.round(), ")"));
    }
    t.scafflsa = ScaffLsaTaskFields{control, msg.anchor_round()};
  }
  t.local.momentum = msg.local().momentum();
  t.local.fresh_batches = msg.local().fresh_batches();
  t.local.grad_clip_norm = msg.local().grad_clip_norm();
  if (msg.has_client_state()) {
    FEDSIM_ASSIGN_OR_RETURN(
        ClientState state,
        DecodeClientState(msg.client_state(), absl::StrCat("task ", msg.task_id())));
    t.client_state = std::make_shared<const ClientState>(std::move(state));
  }
  return t;
}

void EncodeResult(const ClientResult& r, v1::Result& out) {
  out.set_task_id(static_cast<std::uint64_t>(r.task.value));
  out.set_client_id(r.client.value);
  out.set_update(EncodeFlat(r.update));
  out.set_num_examples(r.num_examples);
  out.set_num_steps(r.num_steps);
  out.set_train_loss(r.train_loss);
  if (r.control_delta.size() > 0) out.set_control_delta(EncodeFlat(r.control_delta));
  if (r.client_state.has_value()) {
    EncodeClientState(*r.client_state, *out.mutable_client_state());
  }
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
  if (!msg.control_delta().empty()) {
    FEDSIM_ASSIGN_OR_RETURN(
        r.control_delta,
        DecodeFlat(msg.control_delta(), dim,
                   absl::StrCat("result of task ", msg.task_id(), ", client ",
                                msg.client_id(), ": control_delta")));
  }
  if (msg.has_client_state()) {
    FEDSIM_ASSIGN_OR_RETURN(
        r.client_state,
        DecodeClientState(msg.client_state(),
                          absl::StrCat("result of task ", msg.task_id(), ", client ",
                                       msg.client_id())));
  }
  return r;
}

}  // namespace fedsim
