//! The tool library, the list of operations and the stock: plain data the side panel edits
//! and [`plan`] turns into a core [`PlannedOp`] (its [`millpond_core::JobSpec`], tool and feeds).
//!
//! Operations are an enum of strategies, each with its own parameter struct
//! ([`Strategy`]), so a strategy the core gains is one more variant, its parameter struct, its
//! planning arm and its editor — nothing else changes. The strategies, their parameters and the
//! stock live in [`millpond_core::setup`], shared with `millpond toolpath`; this module adds
//! what only the window has: the list of operations. The tool library is the core's
//! ([`millpond_core::tools`]).

use super::model::Model;
use millpond_core::program::PlannedOp;
use millpond_core::setup::Setup;
pub use millpond_core::setup::{
    LineAxis, OperationDef, OperationFeeds, RasterParams, RoughingParams, Stepover, Stock,
    StockMode, Strategy, WaterlineParams,
};
pub use millpond_core::tools::{Tool, ToolLibrary, ToolShape};

/// The tool shape a strategy is usually cut with: new operations start with one.
pub fn usual_shape(strategy: &Strategy) -> ToolShape {
    match strategy {
        Strategy::Roughing(_) => ToolShape::Flat,
        Strategy::RasterFinishing(_) | Strategy::WaterlineFinishing(_) => ToolShape::Ball,
    }
}

/// The operations in machining order, and which one the editor shows.
#[derive(Clone, Debug)]
pub struct Operations {
    pub list: Vec<OperationDef>,
    pub selected: Option<u64>,
    next_id: u64,
}

impl Operations {
    /// The job a new window starts with: roughing with the first flat end mill of the
    /// library, then raster finishing with the first ball nose (each, failing that, with the
    /// first tool). Finishing alone would run the ball nose through the whole height of the
    /// uncut stock; roughing first leaves it only the allowance and the layers' steps.
    /// The finishing operation is selected: it is the one a user tunes.
    pub fn with_default(tools: &ToolLibrary) -> Self {
        let first = |shape| {
            tools
                .tools
                .iter()
                .find(|t| t.shape == shape)
                .or(tools.tools.first())
                .map_or(0, |t| t.id)
        };
        let mut ops = Self {
            list: Vec::new(),
            selected: None,
            next_id: 1,
        };
        ops.add(
            Strategy::Roughing(RoughingParams::default()),
            first(ToolShape::Flat),
        );
        ops.add(
            Strategy::RasterFinishing(RasterParams::default()),
            first(ToolShape::Ball),
        );
        ops
    }

    /// Operations as a job file lists them; the first is selected.
    pub fn from_list(list: Vec<OperationDef>) -> Self {
        Self {
            next_id: list.iter().map(|o| o.id).max().unwrap_or(0) + 1,
            selected: list.first().map(|o| o.id),
            list,
        }
    }

    /// The first operation of a strategy (the default job's raster finishing, say).
    pub fn first_of(&self, strategy: fn(&Strategy) -> bool) -> Option<&OperationDef> {
        self.list.iter().find(|o| strategy(&o.strategy))
    }

    pub fn add(&mut self, strategy: Strategy, tool: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let name = format!("{} {}", strategy.label(), self.list.len() + 1);
        self.list.push(OperationDef {
            id,
            name,
            enabled: true,
            visible: true,
            tool,
            strategy,
            feeds: None,
        });
        self.selected = Some(id);
        id
    }

    pub fn get(&self, id: u64) -> Option<&OperationDef> {
        self.list.iter().find(|o| o.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut OperationDef> {
        self.list.iter_mut().find(|o| o.id == id)
    }

    pub fn remove(&mut self, id: u64) {
        self.list.retain(|o| o.id != id);
        if self.selected == Some(id) {
            self.selected = self.list.first().map(|o| o.id);
        }
    }

    /// Moves an operation one place earlier (`up`) or later in the machining order.
    pub fn move_by(&mut self, id: u64, up: bool) {
        let Some(i) = self.list.iter().position(|o| o.id == id) else {
            return;
        };
        if up && i > 0 {
            self.list.swap(i, i - 1);
        } else if !up && i + 1 < self.list.len() {
            self.list.swap(i, i + 1);
        }
    }
}

/// Plans an operation for the current model, tool library and stock, as
/// `millpond toolpath` plans it ([`PlannedOp::plan`]); the error names the operation.
pub fn plan(
    op: &OperationDef,
    tools: &ToolLibrary,
    model: &Model,
    stock: &Stock,
    rapid_rate: f64,
) -> Result<PlannedOp, String> {
    let setup = Setup::new(model.mesh.hash(), model.bounds(), stock).map_err(|e| e.to_string())?;
    PlannedOp::plan(op, &tools.tools, &setup, rapid_rate).map_err(|e| format!("{}: {e}", op.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_add_copies_with_fresh_id_and_number() {
        let mut lib = ToolLibrary::default();
        let first = lib.tools[0].clone();
        let id = lib.add(Some(&first));
        let t = lib.get(id).unwrap();
        assert_ne!(t.id, first.id);
        assert_eq!(t.number, 5);
        assert_eq!(t.diameter, first.diameter);
        assert!(t.name.ends_with("(copy)"));
        let json = serde_json::to_string(&lib).unwrap();
        assert_eq!(serde_json::from_str::<ToolLibrary>(&json).unwrap(), lib);
    }

    #[test]
    fn an_operation_s_own_feeds_replace_the_tool_s() {
        let lib = ToolLibrary::default();
        let mut ops = Operations::with_default(&lib);
        let tris = millpond_core::models::geodesic_sphere(
            millpond_core::Point3::new(0.0, 0.0, 0.0),
            10.0,
            2,
        );
        let mesh = std::sync::Arc::new(millpond_core::Mesh::from_triangles(tris, "s").unwrap());
        let model = Model::build(
            "s".into(),
            None,
            mesh,
            super::super::model::Units::Millimetres,
            Vec::new(),
        )
        .unwrap();
        let stock = Stock::default();
        let op = ops.list[1].clone();
        let tool = lib.get(op.tool).unwrap();
        let from_tool = plan(&op, &lib, &model, &stock, 5000.0).unwrap();
        assert_eq!(from_tool.feeds.feed, tool.feed);
        let own = OperationFeeds {
            feed: 2500.0,
            plunge_feed: 150.0,
            spindle_rpm: 12000.0,
        };
        ops.list[1].feeds = Some(own);
        let planned = plan(&ops.list[1], &lib, &model, &stock, 5000.0).unwrap();
        assert_eq!(
            (
                planned.feeds.feed,
                planned.feeds.plunge_feed,
                planned.feeds.spindle_rpm
            ),
            (2500.0, 150.0, 12000.0)
        );
        assert_eq!(
            planned.spec, from_tool.spec,
            "feeds never change the toolpath"
        );
        ops.list[1].feeds = Some(OperationFeeds { feed: 0.0, ..own });
        let e = plan(&ops.list[1], &lib, &model, &stock, 5000.0).unwrap_err();
        assert!(
            e.contains("Raster finishing 2") && e.contains("feed"),
            "{e}"
        );
    }

    #[test]
    fn operations_reorder_and_remove() {
        let lib = ToolLibrary::default();
        let mut ops = Operations::with_default(&lib);
        let rough = ops.list[0].id;
        ops.remove(rough);
        let a = ops.list[0].id;
        let b = ops.add(Strategy::defaults().remove(0), 2);
        ops.move_by(b, true);
        assert_eq!(ops.list[0].id, b);
        ops.move_by(b, true);
        assert_eq!(ops.list[0].id, b, "the first stays first");
        ops.move_by(a, false);
        assert_eq!(ops.list[1].id, a, "the last stays last");
        ops.remove(b);
        assert_eq!(ops.list.len(), 1);
        assert_eq!(ops.selected, Some(a));
    }

    #[test]
    fn default_job_roughs_with_the_end_mill_then_finishes_with_the_ball_nose() {
        let lib = ToolLibrary::default();
        let ops = Operations::with_default(&lib);
        let [rough, finish] = &ops.list[..] else {
            panic!("two operations: {:?}", ops.list);
        };
        assert_eq!(lib.get(rough.tool).unwrap().shape, ToolShape::Flat);
        assert_eq!(lib.get(rough.tool).unwrap().diameter, 6.0);
        assert_eq!(
            rough.strategy,
            Strategy::Roughing(RoughingParams::default())
        );
        assert_eq!(lib.get(finish.tool).unwrap().shape, ToolShape::Ball);
        assert_eq!(lib.get(finish.tool).unwrap().diameter, 3.0);
        let Strategy::RasterFinishing(p) = &finish.strategy else {
            panic!("finishing is raster finishing");
        };
        assert_eq!((p.stepover, p.sampling), (0.5, 0.1));
        assert_eq!(
            ops.selected,
            Some(finish.id),
            "the finishing pass is the one to tune"
        );
    }

    #[test]
    fn strategies_and_stock_round_trip_and_old_saves_take_defaults() {
        for s in Strategy::defaults() {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Strategy>(&json).unwrap(), s);
        }
        let stock = Stock::around_model(3.0, 1.5, 0.5);
        let json = serde_json::to_string(&stock).unwrap();
        assert_eq!(serde_json::from_str::<Stock>(&json).unwrap(), stock);
        // Fields a save does not have (it predates them) take their defaults.
        let p: RasterParams = serde_json::from_str(r#"{"stepover": 0.25}"#).unwrap();
        assert_eq!(
            p,
            RasterParams {
                stepover: 0.25,
                ..RasterParams::default()
            }
        );
        let r: RoughingParams = serde_json::from_str(r#"{"stepover": {"Mm": 1.5}}"#).unwrap();
        assert_eq!(r.stepover, Stepover::Mm(1.5));
        assert_eq!(r.stepdown, RoughingParams::default().stepdown);
    }
}
