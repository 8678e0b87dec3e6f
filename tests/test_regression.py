"""Regression on a table (mlp_regressor): a CSV's columns, or the diabetes data, to numbers in their own units.

One run of the shipped recipe, trained for a few epochs, is shared by the tests that need a finished run.
The CSV reader, the loss and the measures are checked without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from dlkit import tasks
from dlkit.data import sources
from dlkit.errors import DataError, RecipeError
from dlkit.tasks import regression
from dlkit.training.train import train

RECIPE = ROOT / "recipes" / "mlp_regressor_diabetes.yaml"


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory) -> dict:
    """The shipped recipe for 4 epochs: a finished run, its test split measured."""
    result = train(RECIPE, ["train.epochs=4"], runs_root=tmp_path_factory.mktemp("regression"))
    assert result["status"] == "completed"
    return result


def test_a_regressor_predicts_in_its_targets_units(diabetes_run):
    """The model's last layer puts the net's standard deviations back into the target's units (the training
    rows' mean and spread); the test measures are those of its predictions, by scikit-learn's own formulas,
    and the baselines are the training rows' mean and least squares fitted by scikit-learn."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from dlkit import models

    recipe = tasks.load_recipe(RECIPE)
    data = tasks.of(recipe).load_data(recipe)
    s = data.splits
    assert s.y_train.shape[1] == 1 and len(s.x_test) == 88 and data.artifacts["columns"]["targets"] == ["progression"]
    run = diabetes_run["run_dir"]
    model = models.load(f"{run}/model.keras")
    layer = model.get_layer("target_scale")
    np.testing.assert_allclose(np.ravel(layer.offset), s.y_train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(layer.scale), s.y_train.std(axis=0), rtol=1e-5)
    predicted = model.predict(s.x_test * data.scale[0] + data.scale[1], verbose=0)
    test = diabetes_run["test"]
    assert {"mae", "rmse", "val_mae", "val_rmse"} <= set(diabetes_run["final"])  # Keras's, in the target's units
    assert test["mae"] == pytest.approx(mean_absolute_error(s.y_test, predicted), rel=1e-5)
    assert test["rmse"] == pytest.approx(mean_squared_error(s.y_test, predicted) ** 0.5, rel=1e-5)
    assert test["r2"] == pytest.approx(r2_score(s.y_test, predicted), rel=1e-4)
    linear = LinearRegression().fit(s.x_train, s.y_train).predict(s.x_test)
    assert test["baselines"]["linear"]["r2"] == pytest.approx(r2_score(s.y_test, linear), rel=1e-6)
    assert test["baselines"]["mean"]["mae"] == pytest.approx(np.mean(np.abs(s.y_test - s.y_train.mean())), rel=1e-6)
    assert test["vs_best_baseline"]["baseline"] == "linear"  # on this table, far better than the mean
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    assert metrics["test"]["r2"] == test["r2"] and (Path(run) / "predicted_vs_actual.png").is_file()


def test_evaluate_predict_and_export_of_a_regression_run(diabetes_run, tmp_path):
    """`dlkit evaluate` measures any split; `dlkit predict --csv` reads rows by column name (the target's own
    column, if there, unread) and answers in the target's units; the exported model takes raw inputs and
    gives the same numbers; `dlkit runs` shows the test R²."""
    from typer.testing import CliRunner

    from dlkit import models
    from dlkit.cli import app
    from dlkit.rundir import RunDir

    runner = CliRunner()
    run = diabetes_run["run_dir"]
    out = runner.invoke(app, ["evaluate", run, "--split", "val", "--json"])
    assert out.exit_code == 0, out.output
    val = json.loads(out.stdout)
    assert val["split"] == "val" and val["examples"] == 53 and set(val["baselines"]) == {"mean", "linear"}
    rows = tmp_path / "rows.csv"  # columns in another order, the target among them
    rows.write_text("s6,s5,s4,s3,s2,s1,bp,bmi,sex,age,progression\n87,4.8598,4,38,93.2,157,101,32.1,2,59,151\n"
                    "69,3.8918,3,70,103.2,183,87,21.6,1,48,75\n")
    out = runner.invoke(app, ["predict", run, "--csv", str(rows), "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    x = np.array([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87], [48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69]],
                 np.float32)
    model = models.load(f"{run}/model.keras", compile=False)
    exported, what = tasks.TASKS["regression"].exported(RunDir(run), tasks.load_recipe(f"{run}/recipe.yaml"), model)
    raw = np.ravel(exported.predict(x, verbose=0))
    assert [p["input"] for p in answer["predictions"]] == ["rows.csv:2", "rows.csv:3"] and "raw inputs" in what
    np.testing.assert_allclose([p["progression"] for p in answer["predictions"]], raw, rtol=1e-5)
    assert runner.invoke(app, ["predict", run, "--text", "x"]).exit_code == 2
    rows.write_text("age,sex\n1,2\n")
    out = runner.invoke(app, ["predict", run, "--csv", str(rows)])
    assert out.exit_code == 3 and "no column 'bmi'" in out.output
    # a number float64 holds and float32 does not was a prediction from inf; a folder was "no such file"
    rows.write_text("s6,s5,s4,s3,s2,s1,bp,bmi,sex,age\n87,4.8598,4,38,93.2,157,101,32.1,2,1e300\n")
    out = runner.invoke(app, ["predict", run, "--csv", str(rows)])
    assert out.exit_code == 3 and "rows.csv, line 2: 1e+300 is beyond what the model's float32 inputs" in out.stderr
    out = runner.invoke(app, ["predict", run, "--csv", str(tmp_path)])
    assert out.exit_code == 2 and f"{tmp_path}: a folder, not a file" in out.stderr
    listed = runner.invoke(app, ["runs", "--runs-root", str(Path(run).parents[1]), "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["runs"][0]["headline"]["label"] == "test R2"


def test_evaluate_a_regression_on_a_csv_of_ones_own(diabetes_run, tmp_path):
    """`evaluate --data FILE` reads a CSV's feature and target columns by name, in any order: the run's own test
    rows written so measure as its test split, the baselines fitted on its training rows. A target that is not
    a number, or a target column missing, is exit 3 naming it."""
    import shutil

    from typer.testing import CliRunner

    from dlkit.cli import app

    run = shutil.copytree(diabetes_run["run_dir"], tmp_path / "run")  # the shared run stays as it was
    recipe = tasks.load_run_recipe(run / "recipe.yaml")
    s = tasks.of(recipe).load_data(recipe).splits
    names = json.loads((run / "artifacts" / "columns.json").read_text())["features"]
    rows = [",".join([repr(float(y[0])), *(repr(float(v)) for v in x[::-1])]) for x, y in zip(s.x_test, s.y_test)]
    (tmp_path / "mine.csv").write_text(",".join(["progression", *names[::-1]]) + "\n" + "\n".join(rows) + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "mine.csv"), "--json"])
    assert out.exit_code == 0, out.output
    ev, test = json.loads(out.stdout), diabetes_run["test"]
    assert ev["data"] == str(tmp_path / "mine.csv") and ev["examples"] == 88 and "split" not in ev
    for k in ("mae", "rmse", "r2"):
        assert ev[k] == pytest.approx(test[k], rel=1e-5), k
        for b in ("mean", "linear"):
            assert ev["baselines"][b][k] == pytest.approx(test["baselines"][b][k], rel=1e-6), (b, k)
    assert Path(ev["plot"]).is_file() and Path(ev["plot"]).name.startswith("predicted_vs_actual_data_mine_")
    (tmp_path / "bad.csv").write_text(",".join(["progression", *names]) + "\n" + "1," * 10 + "2\nn/a" + ",1" * 10 + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "bad.csv")])
    assert out.exit_code == 3 and "bad.csv, line 3: the target ('progression') is 'n/a', not a finite number" in out.stderr
    (tmp_path / "none.csv").write_text(",".join(names) + "\n" + ",".join("1" * 10) + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "none.csv")])
    assert out.exit_code == 3 and "no target column 'progression'; the run predicts progression" in out.stderr


def test_a_csv_of_targets(tmp_path):
    """Target columns by name (one, given as a string, or several), categorical features one-hot, empty
    feature cells filled by data.missing; a target that is not a number is an error with its line."""
    f = tmp_path / "houses.csv"
    f.write_text("rooms,city,price,area\n3,paris,250000.5,70\n,lyon,180000,60\n4,paris,310000,95\n"
                 "3,nice,220000,80\n5,lyon,400000,120\n")
    a = sources.load_targets_csv(str(f), ["price", "area"], categorical=["city"], missing="mean")
    assert a.columns == {"features": ["rooms", "city=lyon", "city=nice", "city=paris"], "inputs": ["rooms", "city"],
                         "categories": {"city": ["lyon", "nice", "paris"]}, "targets": ["price", "area"]}
    assert a.x_train.shape == (5, 4) and np.isnan(a.x_train[1, 0]) and a.y_train.dtype == np.float32
    np.testing.assert_allclose(a.y_train, [[250000.5, 70], [180000, 60], [310000, 95], [220000, 80], [400000, 120]])
    last = sources.load_targets_csv(str(f), None, categorical=["city"], missing="drop")  # the last column
    assert last.columns["targets"] == ["area"] and last.columns["features"][-1] == "price" and len(last.y_train) == 4
    f.write_text("rooms,price,area\n3,250000,70\n2,180000,\n")
    with pytest.raises(DataError, match=r"line 3: the target \('area'\) is empty"):
        sources.load_targets_csv(str(f), ["price", "area"], missing="mean")  # a target is never filled
    f.write_text("rooms,price\n3,250000\n2,unknown\n")
    with pytest.raises(DataError, match=r"line 3: the target \('price'\) is 'unknown', not a finite number"):
        sources.load_targets_csv(str(f), ["price"])
    f.write_text("rooms,price\n3,\"2,5\"\n")
    with pytest.raises(DataError, match=r"line 2: .*'2,5'.*data.decimal: ','"):
        sources.load_targets_csv(str(f), ["price"])
    with pytest.raises(DataError, match=r"no column 'cost' \(data.target_columns\)"):
        sources.load_targets_csv(str(f), ["cost"])
    with pytest.raises(DataError, match=r"'price' is the target column, not a feature"):
        sources.load_targets_csv(str(f), ["price"], categorical=["price"])


def test_regression_recipes_check_their_keys(write_recipe, tmp_path):
    """`target_columns: price` is a list of one; a target listed as a category, keys that only a csv reads
    on the built-in table, and a classifier's label_column are recipe errors at their lines."""
    csv = tmp_path / "t.csv"
    csv.write_text("a,city,price\n1,x,2.5\n2,y,3.5\n3,x,4.0\n4,y,5.5\n5,x,6.0\n")
    r = tasks.load_recipe(write_recipe(f"name: t\ndata: {{dataset: csv, path: {csv}, target_columns: price, "
                                       "categorical_columns: [city]}\nmodel: {arch: mlp_regressor}\n"))
    assert r.data.target_columns == ["price"] and tasks.of(r).locate(r) == str(csv)
    data = tasks.of(r).load_data(r)
    assert data.spec.target_shape == (1,) and data.spec.num_classes == 0
    with pytest.raises(RecipeError) as e:
        tasks.load_recipe(write_recipe("name: t\ndata:\n  dataset: diabetes\n  separator: ';'\n"
                                       "  label_column: y\nmodel: {arch: mlp_regressor}\n"))
    text = str(e.value)
    assert "recipe.yaml:4: data.separator: read from a csv file only" in text
    assert "recipe.yaml:5: data.label_column: not used here (a regression's targets are data.target_columns" in text
    with pytest.raises(RecipeError, match="'price' is a target"):
        tasks.load_recipe(write_recipe(f"name: t\ndata: {{dataset: csv, path: {csv}, target_columns: [price], "
                                       "categorical_columns: [price]}\nmodel: {arch: mlp_regressor}\n"))
    with pytest.raises(RecipeError, match="train.loss"):
        tasks.load_recipe(write_recipe("name: t\ndata: {dataset: diabetes}\nmodel: {arch: mlp_regressor}\n"
                                       "train: {loss: sparse_categorical_crossentropy}\n"))


def test_the_loss_is_on_errors_in_standard_deviations():
    """The same errors in other units (x1000, with a spread x1000) give the same loss; each kind by hand."""
    from dlkit.models.losses import StandardizedError

    true, pred = np.array([[0.0, 10.0], [2.0, 4.0]]), np.array([[1.0, 13.0], [2.0, 6.0]])
    std = [2.0, 1.0]
    errors = (true - pred) / np.array(std)  # [[-0.5, -3], [0, -2]]
    assert float(StandardizedError(std, "mse")(true, pred)) == pytest.approx(np.mean(errors**2))
    assert float(StandardizedError(std, "mae")(true, pred)) == pytest.approx(np.mean(np.abs(errors)))
    huber = np.where(np.abs(errors) <= 1, 0.5 * errors**2, np.abs(errors) - 0.5)
    assert float(StandardizedError(std, "huber")(true, pred)) == pytest.approx(np.mean(huber))
    assert float(StandardizedError([s * 1000 for s in std])(true * 1000, pred * 1000)) == pytest.approx(
        np.mean(errors**2), rel=1e-5)
    logs = (np.log(true + 1) - np.log(pred + 1)) / np.array(std)  # log: relative errors, the same in any units
    assert float(StandardizedError(std, "mse", log=True)(true + 1, pred + 1)) == pytest.approx(np.mean(logs**2))
    assert float(StandardizedError(std, "mse", log=True)((true + 1) * 1000, (pred + 1) * 1000)) == pytest.approx(
        np.mean(logs**2), rel=1e-5)


def test_measures_by_hand():
    """R² is 1 - squared error / the split's squared deviation from its own mean, averaged over targets; a
    constant target has none (left out of the mean); least squares recovers a linear table exactly."""
    actual = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    s = regression.scores(np.array([[1.0, 5.0], [2.0, 6.0], [4.0, 5.0]]), actual)
    assert s["mae"] == pytest.approx(2 / 6) and s["rmse"] == pytest.approx((2 / 6) ** 0.5)
    assert s["r2"] == pytest.approx(1 - 1 / 2) and np.isnan(s["per_target"][1]["r2"])
    x = np.random.default_rng(0).normal(size=(50, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 7
    fitted = regression.baselines(regression.fit_baselines(x[:40], y[:40]), x[40:])
    np.testing.assert_allclose(fitted["linear"], y[40:], rtol=1e-9)
    np.testing.assert_allclose(fitted["mean"], np.full((10, 1), y[:40].mean()))


def test_a_log_transform_learns_relative_errors(write_recipe, tmp_path):
    """data.target_transform: log, on arrays in an npz. On prices that are exp of a linear function of the
    features, a net with no hidden layer is least squares on the logarithms: it reaches the linear baseline
    (fitted to the logarithms too), its predictions are exp of its net's (above 0), and `predict --csv` reads
    every column in order. A target of 0 is an error at its line (csv) or index (npz)."""
    from typer.testing import CliRunner

    from dlkit import models
    from dlkit.cli import app

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 2))
    price = np.exp(11 + 0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.05 * rng.normal(size=500))  # 10^3 .. 10^6, skewed
    f = tmp_path / "houses.npz"
    np.savez(f, x_train=x[:400], y_train=price[:400], x_test=x[400:], y_test=price[400:])
    recipe = write_recipe(f"name: log\ndata: {{dataset: npz, path: {f}, target_transform: log, batch_size: 16}}\n"
                          "model: {arch: mlp_regressor, hidden: []}\n"
                          "train: {epochs: 5, optimizer: {name: adam, learning_rate: 0.05}}\n")
    result = train(recipe, [], runs_root=tmp_path / "runs")
    test = result["test"]
    linear = test["baselines"]["linear"]
    assert test["examples"] == 100 and test["targets"] == ["y"] and test["target_transform"] == "log"
    assert linear["r2"] > 0.99 and test["vs_best_baseline"]["baseline"] == "linear"
    assert test["mae"] <= 1.1 * linear["mae"] and test["r2"] > 0.98
    model = models.load(f"{result['run_dir']}/model.keras")
    assert model.layers[-1].name == "target_exp" and model.loss.log
    low = model.predict(np.full((1, 2), -40.0), verbose=0)  # far below any training row: still a price above 0
    assert low[0, 0] > 0
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n0.5,-1\n")
    out = CliRunner().invoke(app, ["predict", result["run_dir"], "--csv", str(rows), "--json"])
    assert out.exit_code == 0, out.output
    expected = np.exp(11 + 0.8 * 0.5 + 0.5)
    assert json.loads(out.stdout)["predictions"][0]["y"] == pytest.approx(expected, rel=0.1)
    shown = CliRunner().invoke(app, ["evaluate", result["run_dir"]])  # errors in the targets' units, not 1.2e+04
    assert shown.exit_code == 0 and "geometric mean" in shown.output and "linear on logs" in shown.output
    assert f"{test['mae']:.6g}" in shown.output and "e+0" not in shown.output
    # the training data gone: --data measures against the baselines the run kept, fitted to the logarithms;
    # a run from before they were kept fits them again from its training data, which must then be there
    (tmp_path / "test_rows.csv").write_text("a,b,y\n" + "".join(f"{a!r},{b!r},{p!r}\n" for (a, b), p in
                                                                 zip(x[400:].tolist(), price[400:].tolist())))
    f.rename(tmp_path / "moved.npz")
    mine = CliRunner().invoke(app, ["evaluate", result["run_dir"], "--data", str(tmp_path / "test_rows.csv"), "--json"])
    assert mine.exit_code == 0, mine.output
    mine = json.loads(mine.stdout)
    for k in ("mae", "rmse", "r2"):
        assert mine[k] == pytest.approx(test[k], rel=1e-5), k
        assert mine["baselines"]["linear"][k] == pytest.approx(linear[k], rel=1e-6), k  # float32 inputs there
    (Path(result["run_dir"]) / "artifacts" / "baselines.json").unlink()
    gone = CliRunner().invoke(app, ["evaluate", result["run_dir"], "--data", str(tmp_path / "test_rows.csv")])
    assert gone.exit_code == 3 and "houses.npz" in gone.stderr, gone.output
    (tmp_path / "moved.npz").rename(f)
    again = json.loads(CliRunner().invoke(app, ["evaluate", result["run_dir"], "--data", str(tmp_path / "test_rows.csv"),
                                                "--json"]).stdout)
    assert again["baselines"] == mine["baselines"]
    np.savez(f, x_train=x[:3], y_train=[1.0, 0.0, 2.0])
    with pytest.raises(DataError, match=r"y_train\[1, 0\] is 0, not above 0; data.target_transform: log"):
        sources.load_targets_npz(str(f), positive=True)
    np.savez(f, x_train=x[:3], y_train=[1.0, np.nan, 2.0])
    with pytest.raises(DataError, match=r"y_train\[1, 0\] is nan, not a finite number"):
        sources.load_targets_npz(str(f))
    np.savez(f, x_train=x[:3, :, None], y_train=[1.0, 1.0, 2.0])
    with pytest.raises(DataError, match=r"x_train has shape \(3, 2, 1\); mlp_regressor reads feature vectors"):
        sources.load_targets_npz(str(f))
    np.savez(f, x_train=x[:3])
    with pytest.raises(DataError, match="has no y_train"):
        sources.load_targets_npz(str(f))
    csv = tmp_path / "houses.csv"
    csv.write_text("rooms,age,price\n1,2,3.5\n2,3,0\n")
    with pytest.raises(DataError, match=r"line 3: the target \('price'\) is 0; data.target_transform: log"):
        sources.load_targets_csv(str(csv), ["price"], positive=True)


@pytest.mark.parametrize("arrays,needle", [  # each was read as if it held data to learn or test
    (dict(x_train=np.zeros((0, 3)), y_train=np.zeros(0)), r"x_train has shape \(0, 3\): no examples"),
    (dict(x_train=np.zeros((5, 0)), y_train=np.zeros(5)), r"x_train has shape \(5, 0\): no features"),
    (dict(x_train=np.zeros((5, 3)), y_train=np.zeros((5, 0))), r"y_train has shape \(5, 0\): no targets"),
    (dict(x_train=np.zeros((5, 3)), y_train=np.zeros(5), x_test=np.zeros((0, 3)), y_test=np.zeros(0)),
     r"x_test has shape \(0, 3\): no examples; leave x_test and y_test out to carve a test split"),
])
def test_a_regression_npz_of_no_rows_or_columns_is_said(tmp_path, arrays, needle):
    np.savez(tmp_path / "r.npz", **arrays)
    with pytest.raises(DataError, match=needle):
        sources.load_targets_npz(str(tmp_path / "r.npz"))
