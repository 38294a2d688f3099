package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/layercast/layercast/orchestrator"
)

type screen int

const (
	screenSetup screen = iota
	screenRun
	screenSummary
)

// Sizes used before the terminal reported its own.
const (
	defaultWidth  = 80
	defaultHeight = 24
)

// common is what every screen reads: styles, keys, clock and size.
type common struct {
	styles *styles
	keys   keyMap
	now    func() time.Time
	width  int
	height int
}

// Intents: screens ask the root model for what crosses screens.
type (
	startJobMsg struct {
		opts    orchestrator.Options
		planned []string
	}
	openDetailMsg  struct{ host string }
	closeDetailMsg struct{}
	cancelJobMsg   struct{}
	retryFailedMsg struct{}
	newJobMsg      struct{}
	writeReportMsg struct{}
	quitMsg        struct{}
	parentDoneMsg  struct{}
)

// reportWrittenMsg is the outcome of writing the JSON report.
type reportWrittenMsg struct {
	path string
	err  error
}

// model is the console: it routes messages to the screen in front and owns
// the job, which outlives screens.
type model struct {
	ctx context.Context
	cfg Config
	c   *common

	screen     screen
	setup      setupModel
	run        runModel
	summary    summaryModel
	detail     detailModel
	showDetail bool

	job          *jobState
	seq          int
	quitAfterJob bool // the parent context ended: quit once torn down
}

func newModel(ctx context.Context, cfg Config) model {
	c := &common{
		styles: newStyles(cfg.Renderer),
		keys:   newKeyMap(),
		now:    cfg.Now,
		width:  defaultWidth,
		height: defaultHeight,
	}
	return model{
		ctx:     ctx,
		cfg:     cfg,
		c:       c,
		screen:  screenSetup,
		setup:   newSetupModel(cfg, c),
		run:     newRunModel(),
		summary: newSummaryModel(),
		detail:  newDetailModel(),
	}
}

func (m model) Init() tea.Cmd {
	return tea.Batch(
		m.setup.init(m.ctx),
		waitParent(m.ctx),
	)
}

func waitParent(ctx context.Context) tea.Cmd {
	return func() tea.Msg {
		<-ctx.Done()
		return parentDoneMsg{}
	}
}

func (m model) jobRunning() bool { return m.job.running() }

func (m model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.width, m.c.height = max(msg.Width, 20), max(msg.Height, 8)
		m.setup = m.setup.resize(m.c)
		m.run = m.run.refresh(m.c, m.job)
		m.summary = m.summary.scroll(m.c)
		return m, nil

	case parentDoneMsg:
		if m.jobRunning() {
			// The job's context derives from ours: the engine is already
			// tearing down. Show it, and leave when it is done.
			m.job.cancelling = true
			m.quitAfterJob = true
			return m, nil
		}
		return m, tea.Quit

	case startJobMsg:
		return m.startJob(msg.opts, msg.planned)

	case jobEventsMsg:
		return m.jobEvents(msg)

	case tickMsg:
		if m.job != nil && msg.seq == m.job.seq && m.job.running() {
			return m, tick(msg.seq)
		}
		return m, nil

	case openDetailMsg:
		if m.job == nil {
			return m, nil
		}
		if _, ok := m.job.byName[msg.host]; ok {
			m.detail = m.detail.open(msg.host)
			m.showDetail = true
		}
		return m, nil

	case closeDetailMsg:
		m.showDetail = false
		return m, nil

	case cancelJobMsg:
		if m.jobRunning() && !m.job.cancelling {
			m.job.cancelling = true
			m.job.cancel()
			m.job.addLog(logLine{t: m.c.now(), msg: "cancel requested: tearing the job down"})
		}
		return m, nil

	case retryFailedMsg:
		if m.job == nil || m.jobRunning() {
			return m, nil
		}
		failed := m.job.failedHosts()
		if len(failed) == 0 {
			return m, nil
		}
		opts := m.job.opts
		opts.Hosts = failed
		opts.Groups = nil
		return m.startJob(opts, failed)

	case newJobMsg:
		m.screen = screenSetup
		m.showDetail = false
		return m, nil

	case writeReportMsg:
		if m.job == nil || m.job.report == nil || m.cfg.WriteReport == nil {
			return m, nil
		}
		write, rep := m.cfg.WriteReport, m.job.report
		m.summary.status = "writing report…"
		return m, func() tea.Msg {
			path, err := write(rep)
			return reportWrittenMsg{path: path, err: err}
		}

	case reportWrittenMsg:
		m.summary = m.summary.reportWritten(msg)
		return m, nil

	case quitMsg:
		return m, tea.Quit

	case tea.KeyMsg:
		return m.key(msg)
	}

	// Anything else belongs to the setup screen's loaders and inputs.
	var cmd tea.Cmd
	m.setup, cmd = m.setup.update(msg, m.c)
	return m, cmd
}

func (m model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	if m.showDetail {
		m.detail, cmd = m.detail.update(msg, m.c, m.job)
		return m, cmd
	}
	switch m.screen {
	case screenRun:
		m.run, cmd = m.run.update(msg, m.c, m.job)
	case screenSummary:
		m.summary, cmd = m.summary.update(msg, m.c, m.job, m.cfg.WriteReport != nil)
	default:
		m.setup, cmd = m.setup.update(msg, m.c)
	}
	return m, cmd
}

// startJob runs the engine for opts and switches to the run screen.
func (m model) startJob(opts orchestrator.Options, planned []string) (tea.Model, tea.Cmd) {
	if m.jobRunning() {
		return m, nil
	}
	m.seq++
	ctx, cancel := context.WithCancel(m.ctx)
	j := newJobState(m.seq, opts, m.setup.inv, planned)
	j.cancel = cancel
	j.queue = newEventQueue()
	j.started = m.c.now()
	j.refresh()
	m.job = j
	m.screen = screenRun
	m.showDetail = false
	m.run = m.run.reset().refresh(m.c, j)
	return m, tea.Batch(
		runEngine(ctx, m.cfg.Engine, opts, j.queue, m.cfg.Logger),
		waitEvents(j.queue, j.seq, m.cfg.FrameInterval),
		tick(j.seq),
	)
}

func (m model) jobEvents(msg jobEventsMsg) (tea.Model, tea.Cmd) {
	j := m.job
	if j == nil || msg.seq != j.seq {
		return m, nil // a batch from an earlier job
	}
	now := m.c.now()
	for _, e := range msg.events {
		j.apply(e, now)
	}
	if msg.result == nil {
		j.refresh()
		m.run = m.run.refresh(m.c, j)
		return m, waitEvents(j.queue, j.seq, m.cfg.FrameInterval)
	}
	j.finish(*msg.result, now)
	j.refresh()
	j.cancel()
	if m.quitAfterJob {
		return m, tea.Quit
	}
	if !j.began && j.report == nil {
		// The engine gave up before the job started (bad image, ...): the
		// operator fixes it on the setup screen.
		m.screen = screenSetup
		m.showDetail = false
		m.setup.startErr = startError(msg.result.err)
		return m, nil
	}
	m.run = m.run.refresh(m.c, j)
	m.summary = m.summary.reset(m.c, j)
	m.screen = screenSummary
	return m, nil
}

func startError(err error) string {
	if err == nil {
		return "the engine stopped before the job started"
	}
	if errors.Is(err, context.Canceled) {
		return "the job was cancelled before it started"
	}
	return fmt.Sprintf("the job did not start: %v", err)
}

func (m model) View() string {
	var v string
	switch {
	case m.showDetail && m.job != nil:
		v = m.detail.view(m.c, m.job)
	case m.screen == screenRun && m.job != nil:
		v = m.run.view(m.c, m.job)
	case m.screen == screenSummary && m.job != nil:
		v = m.summary.view(m.c, m.job, m.cfg.WriteReport != nil, m.cfg.LogPath)
	default:
		v = m.setup.view(m.c)
	}
	return clip(strings.TrimRight(v, "\n"), m.c.width, m.c.height)
}
