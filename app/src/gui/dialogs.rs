//! File choices: the desktop's own dialog (rfd's xdg-desktop-portal backend) where the
//! desktop has one, and Millpond's built-in file browser where it has not.
//!
//! Many desktops have no portal (minimal window managers, remote X, some tiling window
//! managers); there the portal dialog "answers" at once with nothing, exactly as if the user
//! had cancelled, and no file could ever be opened or exported. So before asking the portal
//! the dialog thread checks that one is on the session bus; if not, the dialog becomes the
//! built-in browser (a folder field, folders, a filter by extension, recent folders), and
//! the app says why. Preferences can also ask for the
//! built-in browser always, for a portal that is there but broken.
//!
//! A portal dialog can stay open for minutes; the window must keep drawing and computing
//! meanwhile, so each runs on a thread of its own with a small single-threaded tokio
//! runtime and sends the answer back over a channel. The built-in browser is drawn by the
//! window itself, from [`PendingDialog::show`] in the UI pass.

use crate::gui::widgets::UiExt as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};

/// Which file dialog the app uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileBrowser {
    /// The desktop's dialog where the desktop has one (an xdg portal), else the built-in one.
    #[default]
    Desktop,
    /// Always Millpond's own browser.
    BuiltIn,
}

/// The D-Bus name of the desktop portal the dialogs talk to.
const PORTAL: &str = "org.freedesktop.portal.Desktop";

/// Whether the session has a desktop portal to show file dialogs; the reason when not.
pub fn portal_available() -> Result<(), String> {
    let conn =
        zbus::blocking::Connection::session().map_err(|e| format!("no D-Bus session bus ({e})"))?;
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn)
        .map_err(|e| format!("the session bus does not answer ({e})"))?;
    let name = zbus::names::BusName::try_from(PORTAL).map_err(|e| e.to_string())?;
    if dbus.name_has_owner(name.clone()).unwrap_or(false) {
        return Ok(());
    }
    let activatable = dbus.list_activatable_names().unwrap_or_default();
    if activatable.iter().any(|n| n.as_str() == PORTAL) {
        Ok(())
    } else {
        Err("no xdg-desktop-portal on the session bus".into())
    }
}

/// What a dialog asks for.
#[derive(Clone, Debug)]
struct Spec {
    save: bool,
    title: &'static str,
    filter_name: &'static str,
    /// Lower-case file extensions shown (others are hidden, folders always shown).
    extensions: &'static [&'static str],
    start: Option<PathBuf>,
    file_name: Option<String>,
    /// Folders offered beside the built-in browser, most recent first.
    recent: Vec<PathBuf>,
}

/// What the portal thread reports.
enum PortalAnswer {
    Chose(Option<PathBuf>),
    NoPortal(String),
}

enum Shown {
    Portal(Receiver<PortalAnswer>),
    BuiltIn(Box<Browser>),
}

/// A dialog that may still be open.
pub struct PendingDialog {
    spec: Spec,
    shown: Shown,
    /// Why the built-in browser took over, once, for the app to say.
    notice: Option<String>,
    /// The built-in browser's window.
    window_id: egui::Id,
}

impl std::fmt::Debug for PendingDialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDialog")
            .field("title", &self.spec.title)
            .field("built_in", &matches!(self.shown, Shown::BuiltIn(_)))
            .finish_non_exhaustive()
    }
}

impl PendingDialog {
    fn new(repaint: &egui::Context, browser: FileBrowser, spec: Spec) -> Self {
        let spec_title = spec.title;
        let shown = match browser {
            FileBrowser::BuiltIn => Shown::BuiltIn(Box::new(Browser::new(&spec))),
            FileBrowser::Desktop => Shown::Portal(spawn_portal(repaint, spec.clone())),
        };
        Self {
            spec,
            shown,
            notice: None,
            window_id: egui::Id::unique(("millpond-file-browser", spec_title)),
        }
    }

    /// Why the built-in browser took over from the desktop's, once.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    /// Draws the built-in browser (from the UI pass) and returns `Some(answer)` once the
    /// dialog closed; the answer is `None` if the user cancelled.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Option<PathBuf>> {
        if let Shown::Portal(rx) = &self.shown {
            match rx.try_recv() {
                Ok(PortalAnswer::Chose(answer)) => return Some(answer),
                Ok(PortalAnswer::NoPortal(reason)) => {
                    self.notice = Some(format!(
                        "The desktop has no file dialog here ({reason}): using Millpond's own \
                         file browser."
                    ));
                    self.shown = Shown::BuiltIn(Box::new(Browser::new(&self.spec)));
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Some(None),
            }
        }
        let Shown::BuiltIn(browser) = &mut self.shown else {
            return None;
        };
        browser.show(ctx, self.window_id, &self.spec)
    }
}

/// Where to save a program, asked for something (the job to export, the job whose program to
/// fetch): the dialog while it is open, and the folder the last program went to, where the
/// next dialog starts.
#[derive(Debug)]
pub struct SaveProgram<T> {
    open: Option<(PendingDialog, T)>,
    last_dir: Option<PathBuf>,
}

impl<T> Default for SaveProgram<T> {
    fn default() -> Self {
        Self {
            open: None,
            last_dir: None,
        }
    }
}

impl<T> SaveProgram<T> {
    /// Asks where to save the program `file_name` for `what`.
    pub fn ask(
        &mut self,
        repaint: &egui::Context,
        browser: FileBrowser,
        file_name: String,
        what: T,
    ) {
        let recent: Vec<PathBuf> = self.last_dir.iter().cloned().collect();
        let pending = choose(
            repaint,
            browser,
            Choice::ExportGcode,
            self.last_dir.clone(),
            Some(file_name),
            recent,
        );
        self.open = Some((pending, what));
    }

    /// What the open dialog asks for, if one is open.
    pub fn asking(&self) -> Option<&T> {
        self.open.as_ref().map(|(_, what)| what)
    }

    /// Draws the dialog from the UI pass (if it is the built-in browser): once a place is
    /// chosen, it comes back with what it was for; a cancelled dialog puts `cancelled` in
    /// `message`. The second value is why the built-in browser took over, once.
    pub fn show(
        &mut self,
        ctx: &egui::Context,
        message: &mut Option<Result<String, String>>,
        cancelled: &str,
    ) -> (Option<(PathBuf, T)>, Option<String>) {
        let Some((pending, _)) = self.open.as_mut() else {
            return (None, None);
        };
        let answer = pending.show(ctx);
        let notice = pending.take_notice();
        let closed = answer.and_then(|answer| self.open.take().map(|(_, what)| (answer, what)));
        let chosen = match closed {
            Some((Some(path), what)) => Some((path, what)),
            Some((None, _)) => {
                *message = Some(Err(cancelled.into()));
                None
            }
            None => None,
        };
        (chosen, notice)
    }

    /// A program was saved at `path`: the next dialog starts in its folder.
    pub fn saved(&mut self, path: &Path) {
        self.last_dir = path.parent().map(Path::to_path_buf);
    }
}

/// Millpond's own file browser: a folder field, the folder's subfolders and the files with
/// the dialog's extensions, a file-name field, the recent folders, Cancel and Open/Save. Its
/// own rather than a crate's: the egui file dialogs at hand draw their icons with emoji,
/// which egui's bundled fonts do not have (boxes on screen).
#[derive(Debug)]
struct Browser {
    folder: PathBuf,
    folder_edit: String,
    name: String,
    /// The folder's subfolders and matching files, or why it cannot be read.
    entries: Result<Vec<(String, bool)>, String>,
    /// Why the last choice was refused.
    problem: Option<String>,
    answer: Option<Option<PathBuf>>,
}

impl Browser {
    fn new(spec: &Spec) -> Self {
        let folder = spec
            .start
            .clone()
            .filter(|d| d.is_dir())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("/"));
        let mut b = Self {
            folder_edit: folder.display().to_string(),
            folder,
            name: spec.file_name.clone().unwrap_or_default(),
            entries: Ok(Vec::new()),
            problem: None,
            answer: None,
        };
        b.read(spec);
        b
    }

    /// Lists the folder: subfolders first, then the files with the spec's extensions, each
    /// sorted by name; hidden entries are left out.
    fn read(&mut self, spec: &Spec) {
        self.folder_edit = self.folder.display().to_string();
        self.entries = std::fs::read_dir(&self.folder)
            .map_err(|e| format!("cannot read {}: {e}", self.folder.display()))
            .map(|dir| {
                let mut v: Vec<(String, bool)> = dir
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let is_dir = e.path().is_dir();
                        let shown = !name.starts_with('.')
                            && (is_dir || has_extension(&e.path(), spec.extensions));
                        shown.then_some((name, is_dir))
                    })
                    .collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                v
            });
    }

    fn go(&mut self, folder: PathBuf, spec: &Spec) {
        self.folder = folder;
        self.problem = None;
        self.read(spec);
    }

    /// The file the name field means, if it can be the answer.
    fn choose(&mut self, spec: &Spec) {
        let name = self.name.trim();
        if name.is_empty() {
            self.problem = Some("type a file name or pick a file".into());
            return;
        }
        let mut path = self.folder.join(name);
        if path.is_dir() {
            self.go(path, spec);
            self.name.clear();
            return;
        }
        if spec.save {
            if !has_extension(&path, spec.extensions) {
                path.set_extension(spec.extensions[0]);
            }
            if !path.parent().is_some_and(Path::is_dir) {
                self.problem = Some(format!(
                    "no folder {}",
                    path.parent().unwrap_or(&path).display()
                ));
                return;
            }
        } else if !path.is_file() {
            self.problem = Some(format!("no file {}", path.display()));
            return;
        }
        self.answer = Some(Some(path));
    }

    fn show(&mut self, ctx: &egui::Context, id: egui::Id, spec: &Spec) -> Option<Option<PathBuf>> {
        let mut open = true;
        egui::Window::new(format!("{} ({})", spec.title, spec.filter_name))
            .id(id)
            .open(&mut open)
            .default_size([640.0, 420.0])
            .collapsible(false)
            .show(ctx, |ui| self.contents(ui, spec));
        if !open {
            self.answer = Some(None);
        }
        self.answer.clone()
    }

    fn contents(&mut self, ui: &mut egui::Ui, spec: &Spec) {
        ui.horizontal(|ui| {
            if ui
                .button("Up")
                .on_hover_text("The folder this one is in")
                .clicked()
                && let Some(parent) = self.folder.parent()
            {
                self.go(parent.to_path_buf(), spec);
            }
            let r = ui
                .add(egui::TextEdit::singleline(&mut self.folder_edit).desired_width(f32::INFINITY))
                .on_hover_text("The folder shown: type one and press Enter");
            if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let dir = PathBuf::from(self.folder_edit.trim());
                if dir.is_dir() {
                    self.go(dir, spec);
                } else {
                    self.problem = Some(format!("no folder {}", dir.display()));
                }
            }
        });
        if !spec.recent.is_empty() {
            ui.horizontal_wrapped(|ui| {
                ui.label("Recent:");
                for dir in spec.recent.clone() {
                    let label = dir.file_name().map_or_else(
                        || dir.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    if ui.tipped_button(label, dir.display().to_string()) {
                        self.go(dir, spec);
                    }
                }
            });
        }
        ui.separator();
        let mut enter = None;
        let mut pick = None;
        egui::ScrollArea::vertical()
            .max_height(260.0)
            .auto_shrink([false, true])
            .show(ui, |ui| match &self.entries {
                Err(e) => {
                    ui.colored_label(egui::Color32::LIGHT_RED, e);
                }
                Ok(entries) if entries.is_empty() => {
                    ui.weak(format!(
                        "No folders and no {} files here.",
                        spec.filter_name
                    ));
                }
                Ok(entries) => {
                    for (name, is_dir) in entries {
                        let text = if *is_dir {
                            format!("{name}/")
                        } else {
                            name.clone()
                        };
                        let r = ui.selectable_label(!is_dir && *name == self.name, text);
                        if r.double_clicked() || (*is_dir && r.clicked()) {
                            enter = Some((name.clone(), *is_dir));
                        } else if r.clicked() {
                            pick = Some(name.clone());
                        }
                    }
                }
            });
        if let Some(name) = pick {
            self.name = name;
        }
        if let Some((name, is_dir)) = enter {
            if is_dir {
                let dir = self.folder.join(name);
                self.go(dir, spec);
            } else {
                self.name = name;
                self.choose(spec);
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            ui.label("File name");
            let r = ui
                .add(egui::TextEdit::singleline(&mut self.name).desired_width(320.0))
                .on_hover_text("A name in the folder shown, or a whole path; Enter chooses it");
            if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                self.choose(spec);
            }
        });
        if let Some(p) = &self.problem {
            ui.colored_label(egui::Color32::LIGHT_RED, p);
        }
        ui.horizontal(|ui| {
            let verb = if spec.save { "Save" } else { "Open" };
            if ui.button(verb).clicked() {
                self.choose(spec);
            }
            if ui.button("Cancel").clicked() {
                self.answer = Some(None);
            }
        });
    }
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn spawn_portal(repaint: &egui::Context, spec: Spec) -> Receiver<PortalAnswer> {
    let (tx, rx) = channel();
    let repaint = repaint.clone();
    let spawned = std::thread::Builder::new()
        .name("millpond-dialog".into())
        .spawn(move || {
            let answer = match portal_available() {
                Err(reason) => PortalAnswer::NoPortal(reason),
                Ok(()) => PortalAnswer::Chose(run_portal(&spec)),
            };
            let _ = tx.send(answer);
            repaint.request_repaint();
        });
    if spawned.is_err() {
        // The receiver sees a closed channel: the same as a cancelled dialog.
        tracing::warn!("cannot start a thread for the file dialog");
    }
    rx
}

fn run_portal(spec: &Spec) -> Option<PathBuf> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    // Portal filters are glob patterns, case-sensitive: offer both cases.
    let patterns: Vec<String> = spec
        .extensions
        .iter()
        .flat_map(|e| [e.to_string(), e.to_uppercase()])
        .collect();
    let mut d = rfd::AsyncFileDialog::new()
        .set_title(spec.title)
        .add_filter(spec.filter_name, &patterns);
    if !spec.save {
        d = d.add_filter("All files", &["*"]);
    }
    if let Some(dir) = &spec.start {
        d = d.set_directory(dir);
    }
    if let Some(name) = &spec.file_name {
        d = d.set_file_name(name);
    }
    let handle = if spec.save {
        rt.block_on(d.save_file())
    } else {
        rt.block_on(d.pick_file())
    };
    handle.map(|h| h.path().to_path_buf())
}

/// What a file dialog is for: each has its title, its filter and whether it saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    OpenModel,
    /// The model of a job being opened, which is not where the job says.
    LocateModel,
    ExportGcode,
    OpenJob,
    SaveJob,
    ImportTools,
    ExportTools,
}

impl Choice {
    /// Saves (asks for a new file name), title, filter name, extensions.
    fn describe(self) -> (bool, &'static str, &'static str, &'static [&'static str]) {
        const STL: &[&str] = &["stl"];
        const JOBS: &[&str] = &["millpond"];
        const TOOLS: &[&str] = &["toml"];
        match self {
            Choice::OpenModel => (false, "Open model", "STL models", STL),
            Choice::LocateModel => (false, "Where is the job's model?", "STL models", STL),
            Choice::ExportGcode => (
                true,
                "Export G-code",
                "G-code",
                &["ngc", "nc", "gcode", "tap"],
            ),
            Choice::OpenJob => (false, "Open job", "Millpond jobs", JOBS),
            Choice::SaveJob => (true, "Save job", "Millpond jobs", JOBS),
            Choice::ImportTools => (false, "Import tools", "Millpond tool libraries", TOOLS),
            Choice::ExportTools => (true, "Export tools", "Millpond tool libraries", TOOLS),
        }
    }
}

/// Asks for a file: the desktop's dialog, or the built-in browser. `file_name` is the name
/// offered when saving; `recent` the folders offered beside the built-in browser.
pub fn choose(
    repaint: &egui::Context,
    browser: FileBrowser,
    choice: Choice,
    start: Option<PathBuf>,
    file_name: Option<String>,
    recent: Vec<PathBuf>,
) -> PendingDialog {
    let (save, title, filter_name, extensions) = choice.describe();
    PendingDialog::new(
        repaint,
        browser,
        Spec {
            save,
            title,
            filter_name,
            extensions,
            start,
            file_name: if save { file_name } else { None },
            recent,
        },
    )
}

/// The folders of `files`, most recent first, each once.
pub fn folders_of(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in files.iter().filter_map(|f| f.parent()) {
        if !dir.as_os_str().is_empty() && !out.iter().any(|d| d == dir) {
            out.push(dir.to_path_buf());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_folders_come_once_each_newest_first() {
        let files = [
            PathBuf::from("/parts/a.stl"),
            PathBuf::from("/jobs/b.stl"),
            PathBuf::from("/parts/c.stl"),
            PathBuf::from("d.stl"),
        ];
        assert_eq!(
            folders_of(&files),
            [PathBuf::from("/parts"), PathBuf::from("/jobs")]
        );
    }
}
