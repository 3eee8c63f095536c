//! The Detached jobs window: submit the job to a pool member, and the jobs submitted from
//! this window with where each stands, Fetch, Cancel and Forget. It only draws: what the
//! user asks for comes back as [`DetachedAction`]s (`MillpondApp::detached_action`).

use super::detached::{DetachedAction, DetachedJobs, Live};
use crate::common::format_duration;
use egui::Ui;
use millpond_net::detached::JobState;

use crate::gui::widgets::{ERROR_RED, outcome};

/// What the panel shows of a job: its state and its ETA, and whether it is an error.
pub fn describe(live: Option<&Live>) -> (String, String, bool) {
    match live {
        None => ("asking the member…".into(), String::new(), false),
        Some(Live::NotKept) => (
            "not kept by the member: it restarted (it keeps results in memory) or dropped the \
             job"
            .into(),
            String::new(),
            true,
        ),
        Some(Live::Unreachable(e)) => (e.clone(), String::new(), true),
        Some(Live::Row(row)) => {
            let eta = match (&row.state, row.eta_s) {
                (JobState::Running { .. } | JobState::Queued { .. }, Some(s)) => {
                    format_duration(s as f64)
                }
                _ => String::new(),
            };
            let failed = matches!(row.state, JobState::Failed { .. });
            (row.state.to_string(), eta, failed)
        }
    }
}

/// Draws the window's contents; returns what was asked.
pub fn show(
    ui: &mut Ui,
    d: &DetachedJobs,
    remotes: &[String],
    has_secret: bool,
) -> Vec<DetachedAction> {
    let mut actions = Vec::new();
    submit_ui(ui, d, remotes, has_secret, &mut actions);
    ui.separator();
    outcome(ui, &d.message);
    ui.horizontal(|ui| {
        ui.strong("Jobs submitted from this window");
        if ui
            .button("Refresh")
            .on_hover_text(format!(
                "Ask the members now (the list asks every {} s while it is open)",
                super::detached::REFRESH_EVERY.as_secs()
            ))
            .clicked()
        {
            actions.push(DetachedAction::Refresh);
        }
    });
    if d.list.jobs.is_empty() {
        ui.weak("None yet.");
        return actions;
    }
    let now = super::detached_list::now_s();
    egui::ScrollArea::vertical()
        .id_salt("detached-jobs")
        .max_height(360.0)
        .show(ui, |ui| {
            egui::Grid::new("detached-jobs-grid")
                .num_columns(7)
                .striped(true)
                .show(ui, |ui| {
                    for h in ["Title", "Member", "Id", "Submitted", "State", "ETA", ""] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for job in d.list.jobs.iter().rev() {
                        let key = job.key();
                        let live = d.live.get(&key);
                        let (state, eta, bad) = describe(live);
                        ui.label(&job.title);
                        ui.label(&job.member);
                        let id = job.id.to_string();
                        ui.label(&id[..8])
                            .on_hover_text(format!("Job id {id}: `millpond fetch {id}` works too"));
                        ui.label(format!(
                            "{} ago",
                            format_duration(now.saturating_sub(job.submitted) as f64)
                        ));
                        if bad {
                            ui.colored_label(ERROR_RED, state);
                        } else {
                            ui.label(state);
                        }
                        ui.label(eta);
                        ui.horizontal(|ui| {
                            let busy = d.busy(&key);
                            let complete = matches!(
                                live,
                                Some(Live::Row(r)) if matches!(r.state, JobState::Complete { .. })
                            );
                            let running = matches!(
                                live,
                                Some(Live::Row(r)) if matches!(
                                    r.state,
                                    JobState::Running { .. } | JobState::Queued { .. }
                                )
                            );
                            if ui
                                .add_enabled(!busy && complete, egui::Button::new("Fetch…"))
                                .on_hover_text("Save the job's G-code (as millpond fetch does)")
                                .on_disabled_hover_text(
                                    "Fetch once the member says the job is complete",
                                )
                                .clicked()
                            {
                                actions.push(DetachedAction::Fetch(key.clone()));
                            }
                            if ui
                                .add_enabled(!busy && running, egui::Button::new("Cancel"))
                                .on_hover_text("Stop the job at the member")
                                .on_disabled_hover_text("Only a queued or running job")
                                .clicked()
                            {
                                actions.push(DetachedAction::Cancel(key.clone()));
                            }
                            if ui
                                .button("Forget")
                                .on_hover_text(
                                    "Take the job off this list (the member keeps it until it \
                                     drops it)",
                                )
                                .clicked()
                            {
                                actions.push(DetachedAction::Forget(key.clone()));
                            }
                        });
                        ui.end_row();
                    }
                });
        });
    actions
}

/// The member to send the job to, and Submit.
fn submit_ui(
    ui: &mut Ui,
    d: &DetachedJobs,
    remotes: &[String],
    has_secret: bool,
    actions: &mut Vec<DetachedAction>,
) {
    ui.label(
        "Hand the whole job (every enabled operation) to a pool member running `millpond \
         serve`: it computes on its pool while this window may close; fetch the G-code later.",
    );
    if remotes.is_empty() {
        ui.weak("Add the member as a remote server in Preferences first.");
    }
    if !has_secret {
        ui.colored_label(
            ERROR_RED,
            "No pool secret: set the pool's secret in Preferences.",
        );
    }
    ui.horizontal(|ui| {
        let l = ui.label("Member");
        let mut member = d.member.clone();
        egui::ComboBox::from_id_salt("detached-member")
            .selected_text(if member.is_empty() {
                "(none)"
            } else {
                member.as_str()
            })
            .show_ui(ui, |ui| {
                for r in remotes {
                    ui.selectable_value(&mut member, r.clone(), r);
                }
            })
            .response
            .labelled_by(l.id)
            .on_hover_text("The pool member that runs the job: Preferences' remote servers");
        if member != d.member {
            actions.push(DetachedAction::Choose(member.clone()));
        }
        let ready = !member.is_empty() && has_secret && !d.submitting;
        if ui
            .add_enabled(ready, egui::Button::new("Submit job"))
            .on_hover_text(
                "Send the job as it is now (model, stock, tools, operations, post) to the member",
            )
            .on_disabled_hover_text("Choose a member (and set the pool secret) first")
            .clicked()
        {
            actions.push(DetachedAction::Submit(member));
        }
        if d.submitting {
            ui.spinner();
        }
    });
}
